#!/bin/sh
# s3.sh BUILD_DIR SECONDS [EXTRA_CONF_LINE...]: ringmx durable on 127.0.0.1, S3 with
# ringmx-bench (100 at a time, new connection per message, 1 KiB); perf record on the server.
set -eu
b=$1; secs=$2; shift 2
d=$(mktemp -d); port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
{ echo "hostname = mx.test"; echo "workers = 2"; echo "listen = 127.0.0.1:$port"; echo "data_dir = $d/data"
  echo "fsync = always"; echo "accept_domains = example.test"; echo "max_connections = 120000"; echo "store_max_bytes = 2G"
  for l in "$@"; do echo "$l"; done; } > $d/ringmx.conf
$b/ringmx -c $d/ringmx.conf > $d/log 2>&1 &
pid=$!; sleep 0.7
$b/bench/ringmx-bench --server 127.0.0.1:$port --conns 100 --size 1k --new-conn-per-message --duration 1 --from a@b.test --to u@example.test >/dev/null 2>&1 || true
if [ -n "${PERF:-}" ]; then perf record -e cpu-clock -F 2000 -g -p $pid -o $PERF -- sleep $((secs)) >/dev/null 2>&1 & pp=$!; fi
$b/bench/ringmx-bench --server 127.0.0.1:$port --conns 100 --size 1k --new-conn-per-message --duration $secs --from a@b.test --to u@example.test --pid $pid --json - 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print("msgs/s %.0f server_cpu_us/msg %.1f rss %s" % (r["msgs_per_s"], r["server_cpu_s_per_1000"]*1000, r.get("server_rss_kib_after")))'
[ -n "${PERF:-}" ] && wait $pp || true
kill $pid; wait $pid || true; rm -rf $d
