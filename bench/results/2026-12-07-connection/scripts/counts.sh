#!/bin/sh
# counts.sh BUILD_DIR MESSAGES [EXTRA_CONF_LINE...]: S3 (ringmx-bench, 100 at a time, a new connection
# per message) for a fixed count; prints per message: system calls of the server (strace -c -f),
# context switches of its threads, and TCP segments sent on the machine (both sides, /proc/net/snmp).
set -eu
b=$1; n=$2; shift 2
d=$(mktemp -d); port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
{ echo "hostname = mx.test"; echo "workers = 2"; echo "listen = 127.0.0.1:$port"; echo "data_dir = $d/data"
  echo "fsync = always"; echo "accept_domains = example.test"; echo "max_connections = 120000"; echo "store_max_bytes = 2G"
  for l in "$@"; do echo "$l"; done; } > $d/ringmx.conf
$b/ringmx -c $d/ringmx.conf > $d/log 2>&1 &
pid=$!; sleep 0.7
run() { $b/bench/ringmx-bench --server 127.0.0.1:$port --conns 100 --size 1k --new-conn-per-message --messages $1 --from a@b.test --to u@example.test >/dev/null 2>&1; }
run 2000
ctx() { cat /proc/$pid/task/*/status | awk '/ctxt_switches/ {s+=$2} END {print s}'; }
segs() { awk '/^Tcp:/ {if (h) print $12; h=1}' /proc/net/snmp; }
c0=$(ctx); s0=$(segs)
strace -f -c -o $d/strace -p $pid & st=$!; sleep 1
run $n
kill -INT $st; wait $st || true
c1=$(ctx); s1=$(segs)
calls=$(awk '/total/ {print ($(NF-1) ~ /^[0-9]+$/ && NF == 6) ? $(NF-2) : $(NF-1)}' $d/strace)
echo "per message: syscalls $(echo "$calls $n" | awk '{printf "%.2f", $1/$2}') ctx_switches $(echo "$c0 $c1 $n" | awk '{printf "%.2f", ($2-$1)/$3}') tcp_segments_out(both sides) $(echo "$s0 $s1 $n" | awk '{printf "%.2f", ($2-$1)/$3}')"
cat $d/strace
kill $pid; wait $pid || true; rm -rf $d
