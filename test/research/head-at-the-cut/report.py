import json,sys
for line in open(sys.argv[1]):
    d=json.loads(line); s=d['signals']; t=d['truth']
    print(f"== {d['scenario']} rep{d['rep']} pub={d['published']} nacked={d['brokerNacked']} sumPrefetch={d['sumPrefetch']} mgmtPrefetch={d['mgmtPrefetch']} consumers={s['consumerCount']}")
    print(f"   passive: pre={s['preDecl']} pipelined={s['same']}({s['sameLagMs']}ms after pub) after={s['after']}(+{s['afterLagMs']}ms after confirm) other={s['other']}(+{s['otherLagMs']}ms) confirm={s['confirmMs']}ms | mgmt msgs={s['mgmt'].get('messages')} ready={s['mgmt'].get('ready')} unacked={s['mgmt'].get('unacked')}")
    print(f"   truth: heldAtFence={t['heldAtFence']} heldBeforeFence={t['heldBeforeFenceInJournal']} drained={t['drained']} ackAfter={t['ackAfterFence']} ambiguous={t['ambiguousAcks']} expiredAfter={t['expiredAfter']}")
    for h in d['heads']:
        print(f"   {h['label']:42s} N={h['N']} dataBefore={h['dataBefore']} countHead={h['countHead']} trueHead={h['trueHead']} LOST={h['lost']} extra={h['extra']} heldSpan={h['heldSpan']}")
