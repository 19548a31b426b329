#!/usr/bin/env python3
"""breakdown_table.py DIR: the files breakdown.sh wrote, as one table: server CPU per message
by group (share of the samples x the run's CPU per message), ringmx / smtp-sink per column."""
import glob, os, re, sys

ROWS = [
    ("io-wq: fdatasync (ext4, jbd2, block)", ("io-wq: fdatasync",)),
    ("io-wq: write into the page cache", ("io-wq: write",)),
    ("io-wq: its own scheduling and hand-offs", ("io-wq: other",)),
    ("kernel: TCP send (with loopback delivery to the peer)", ("kernel: TCP send",)),
    ("kernel: TCP receive", ("kernel: TCP receive",)),
    ("kernel: accept, shutdown, close", ("kernel: connection",)),
    ("kernel: TCP input in softirq", ("kernel: TCP input",)),
    ("kernel: wake-ups and the scheduler (epoll/io_uring waits)", ("kernel: wake",)),
    ("kernel: io_uring itself", ("kernel: io_uring",)),
    ("kernel: other (syscall entry/exit, faults)", ("kernel: other",)),
    ("user: ringmx proto/ (parse, replies, Received:)", ("user: ringmx proto/",)),
    ("user: ringmx storage/ (record, CRC, store)", ("user: ringmx storage/",)),
    ("user: ringmx core/ (loop, connections, txn, timers)", ("user: ringmx core/worker", "user: ringmx core/smtp_conn",
        "user: ringmx core/txn", "user: ringmx core/timer", "user: ringmx core/ring", "user: ringmx core/transport",
        "user: ringmx core/store_io", "user: ringmx core/forward", "user: ringmx core/client_table",
        "user: ringmx core/listener", "user: ringmx core/config", "user: ringmx core/overload", "user: ringmx core/front", "user: ringmx (other)")),
    ("user: ringmx core/log*, metrics", ("user: ringmx core/log", "user: ringmx core/metrics")),
    ("user: smtp-sink and Postfix libraries", ("user: smtp-sink",)),
    ("user: allocator", ("user: allocator",)),
    ("user: libc", ("user: libc",)),
    ("user: clock (vDSO), liburing, other", ("user: clock", "user: liburing", "user: other", "user: crypto", "other")),
]

def load(path):
    lines = open(path).read().split("\n")
    head = lines[0].split()
    meta = dict(zip(head[0::2], head[1::2]))
    meta["msgs/s"] = lines[1].split()[1]
    cpu = float(re.search(r"server_cpu_us/msg ([0-9.]+)", lines[1]).group(1))
    shares = {}
    for ln in lines[2:]:
        m = re.match(r"\| (.*) \| ([0-9.]+)% \|", ln)
        if m:
            shares[m.group(1)] = float(m.group(2))
    return meta, cpu, shares

runs = []
for scn in ("S1", "S3"):
    for client in ("ringmx-bench", "smtp-source"):
        for sysname in ("ringmx", "smtp-sink"):
            p = os.path.join(sys.argv[1], "%s-%s-%s.txt" % (sysname, client, scn))
            if os.path.exists(p):
                runs.append(load(p))
cols = [(runs[i], runs[i + 1]) for i in range(0, len(runs) - 1, 2)
        if runs[i][0]["system"] == "ringmx" and runs[i + 1][0]["system"] == "smtp-sink"]
print("| server CPU, us per message: ringmx / smtp-sink | "
      + " | ".join("%s, %s" % (a[0]["scenario"], a[0]["client"]) for a, _ in cols) + " |")
print("|---|" + "---|" * len(cols))
seen = set()
def value(run, prefixes):
    _, cpu, shares = run
    s = 0.0
    for k, v in shares.items():
        if any(k.startswith(p) for p in prefixes):
            s += v
            seen.add(k)
    return cpu * s / 100.0
for label, prefixes in ROWS:
    vals = [(value(a, prefixes), value(b, prefixes)) for a, b in cols]
    if any(x >= 0.05 or y >= 0.05 for x, y in vals):
        print("| %s | %s |" % (label, " | ".join("%.1f / %.1f" % v for v in vals)))
print("| **whole process** | %s |" % " | ".join("**%.1f / %.1f**" % (a[1], b[1]) for a, b in cols))
print("| msgs/s in this profiled run | %s |" % " | ".join("%s / %s" % (a[0]["msgs/s"], b[0]["msgs/s"]) for a, b in cols))
missed = set(k for _, _, sh in runs for k in sh) - seen - {"samples"}
if missed:
    print("unplaced:", sorted(missed), file=sys.stderr)
