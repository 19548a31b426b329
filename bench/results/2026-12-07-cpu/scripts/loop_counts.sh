#!/bin/sh
# loop_counts.sh BUILD_DIR WORKERS MESSAGES [CLIENT_ARGS...]: ringmx durable on 127.0.0.1, 1 KiB
# messages from ringmx-bench (100 connections, pipelining unless CLIENT_ARGS say otherwise);
# prints per message: server CPU, io_uring_enter calls, context switches, wake-ups, io-wq punts,
# task-work runs of the server's threads (perf stat tracepoints, io-wq included), and the
# group commit's records per commit (from /metrics). PERF=FILE also records a cpu-clock
# profile of the server (-g, every thread) into FILE; CONF="key = value\\n..." adds configuration.
set -eu
b=$1; w=$2; n=$3; shift 3
d=$(mktemp -d)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
mport=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
{ echo "hostname = mx.test"; echo "workers = $w"; echo "listen = 127.0.0.1:$port"; echo "data_dir = $d/data"
  echo "fsync = always"; echo "accept_domains = example.test"; echo "max_connections = 120000"
  echo "store_max_bytes = 4G"; echo "metrics_listen = 127.0.0.1:$mport"; printf "%b\n" "${CONF:-}"; } > $d/ringmx.conf
$b/ringmx -c $d/ringmx.conf > $d/log 2>&1 &
pid=$!; sleep 0.7
bench() { $b/bench/ringmx-bench --server 127.0.0.1:$port --conns 100 --size 1k --from a@b.test \
	--to u@example.test "$@"; }
bench --messages 5000 "$@" >/dev/null 2>&1
metric() { curl -s http://127.0.0.1:$mport/metrics | awk -v k="$1" '$1 == k {s += $2} END {print s + 0}'; }
b0=$(metric ringmx_store_commit_batch_records_count); r0=$(metric ringmx_store_commit_batch_records_sum)
perf stat -x, -o $d/stat -e task-clock,syscalls:sys_enter_io_uring_enter,sched:sched_switch,sched:sched_wakeup,io_uring:io_uring_queue_async_work,io_uring:io_uring_local_work_run,io_uring:io_uring_task_work_run,io_uring:io_uring_submit_req,io_uring:io_uring_complete -p $pid &
ps=$!
if [ -n "${PERF:-}" ]; then perf record -e cpu-clock -F 2000 -g -p $pid -o $PERF >/dev/null 2>&1 & pp=$!; fi
sleep 0.3
bench --messages $n --pid $pid --json $d/bench.json "$@" >/dev/null 2>&1
kill -INT $ps; wait $ps || true
if [ -n "${PERF:-}" ]; then kill -INT $pp; wait $pp || true; fi
b1=$(metric ringmx_store_commit_batch_records_count); r1=$(metric ringmx_store_commit_batch_records_sum)
python3 - "$d/stat" "$d/bench.json" "$n" "$w" "$((b1 - b0))" "$((r1 - r0))" <<'PY'
import json, sys
stat, bj, n, w, commits, records = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
r = json.load(open(bj))
v = {}
for line in open(stat):
    f = line.strip().split(',')
    if len(f) > 3 and f[0] and f[0][0].isdigit():
        v[f[2].split(':')[-1]] = float(f[0])
out = ["workers %s" % w, "msgs/s %.0f" % r["msgs_per_s"], "cpu_us/msg %.1f" % (r["server_cpu_s_per_1000"] * 1000)]
for k in ("sys_enter_io_uring_enter", "sched_switch", "sched_wakeup", "io_uring_queue_async_work",
          "io_uring_local_work_run", "io_uring_task_work_run", "io_uring_submit_req", "io_uring_complete"):
    out.append("%s/msg %.2f" % (k.replace("sys_enter_", "").replace("io_uring_", "uring_") if k != "sys_enter_io_uring_enter" else "enter", v.get(k, 0) / n))
out.append("records/commit %.1f" % (records / commits if commits else 0))
print(" ".join(out))
PY
kill $pid; wait $pid || true; rm -rf $d
