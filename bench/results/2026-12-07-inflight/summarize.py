import json, glob, statistics as st, collections, sys
base = sys.argv[1] if len(sys.argv) > 1 else '.'
rows = collections.defaultdict(list)
for f in sorted(glob.glob(base + '/r*-*/*.json')):
    v = f.split('/')[-2].split('-', 1)[1]
    for r in json.load(open(f))['runs']:
        key = (r['scenario'], r['client'], v)
        rows[key].append(r)
def med(lst, fn):
    vals = [fn(x) for x in lst if fn(x) is not None]
    return st.median(vals) if vals else float('nan')
print("%-4s %-12s %-11s %3s %8s %7s %6s %8s %8s %8s %8s %8s %7s" % ("scn","client","variant","n","msgs/s","us/msg","iowq","ack50","ack99","ack999","cmt50","cmt99","others"))
for k in sorted(rows):
    l = rows[k]
    print("%-4s %-12s %-11s %3d %8.0f %7.1f %6.1f %8.0f %8.0f %8.0f %8.0f %8.0f %7.2f" % (k[0], k[1], k[2], len(l),
        med(l, lambda r: r['msgs_per_s']), med(l, lambda r: r['server_cpu_us_per_msg']),
        100*med(l, lambda r: r.get('iowq_cpu_share')), med(l, lambda r: r['latency_ack_us']['p50'] if r.get('latency_ack_us') else None),
        med(l, lambda r: r['latency_ack_us']['p99'] if r.get('latency_ack_us') else None),
        med(l, lambda r: r['latency_ack_us']['p99_9'] if r.get('latency_ack_us') else None),
        med(l, lambda r: r.get('commit_p50_us')), med(l, lambda r: r.get('commit_p99_us')),
        med(l, lambda r: r.get('others_cpu_share'))))
