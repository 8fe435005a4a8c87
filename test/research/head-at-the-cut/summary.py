import json,glob,collections,sys
rows=collections.OrderedDict()
for f in sorted(glob.glob(sys.argv[1] if len(sys.argv)>1 else './out_*.jsonl')):
    for line in open(f):
        d=json.loads(line); s=d['signals']; t=d['truth']
        key=d['scenario']
        r=rows.setdefault(key,{'n':0,'heads':collections.OrderedDict(),'info':[]})
        r['n']+=1
        r['info'].append(f"dataBefore={d['heads'][0]['dataBefore']} heldBefore={t['heldBeforeFenceInJournal']} span={d['heads'][0]['heldSpan']} trueHead={d['heads'][0]['trueHead']} R_after={s['after']} R_pre={s['preDecl']} R_pipe={s['same']} mgmt(m/r/u)={s['mgmt'].get('messages')}/{s['mgmt'].get('ready')}/{s['mgmt'].get('unacked')} confirm={s['confirmMs']}ms nacked={d['brokerNacked']} expiredAfter={t['expiredAfter']}")
        for h in d['heads']:
            a=r['heads'].setdefault(h['label'],[])
            a.append((h['lost'],h['extra']))
for k,r in rows.items():
    print(f"## {k} (reps={r['n']})")
    for i in r['info']: print('   ',i)
    for lab,v in r['heads'].items():
        print(f"    {lab:42s} lost={[x[0] for x in v]} extra={[x[1] for x in v]}")
