import json,glob
rows=[]
for f in glob.glob('./out_*.jsonl')+glob.glob('./outq_*.jsonl')+glob.glob('./outv2_*.jsonl'):
    for l in open(f):
        d=json.loads(l); s=d['signals']; rows.append((d['scenario'],s))
def st(xs): xs=sorted(xs); return f"n={len(xs)} min={xs[0]} median={xs[len(xs)//2]} p90={xs[int(len(xs)*0.9)]} max={xs[-1]}"
print('confirm latency of fence (ms):', st([s['confirmMs'] for _,s in rows]))
print('pipelined declare (same channel, sent right after publish) reply, ms after publish:', st([s['sameLagMs'] for _,s in rows]))
print('declare after confirm, same channel, ms after confirm:', st([s['afterLagMs'] for _,s in rows]))
print('declare after confirm, other channel, ms after confirm:', st([s['otherLagMs'] for _,s in rows]))
print('|R_pipelined - R_before_fence| msgs:', st([abs(s['same']-s['preDecl']) for _,s in rows]))
print('|R_after - R_pipelined| msgs:', st([abs(s['after']-s['same']) for _,s in rows]))
print('|R_other - R_after| msgs:', st([abs(s['other']-s['after']) for _,s in rows]))
print('mgmt fetch right after confirm: |mgmt.ready - R_after|:', st([abs((s['mgmt'].get('ready') or 0)-s['after']) for _,s in rows]))
