#!/bin/sh
# breakdown.sh BUILD_DIR SYSTEM CLIENT SCENARIO OUT_DIR: one run of SCENARIO (S1: 100 persistent
# connections, S3: a new connection per message, 100 at a time; 1 KiB) from CLIENT (ringmx-bench or
# smtp-source) against SYSTEM (ringmx: durable, workers = 2, log to a file, as bench/compare runs
# it; smtp-sink: as bench/compare runs it), with `perf record -a -g` (cpu-clock) over the measured
# part. Writes OUT_DIR/SYSTEM-CLIENT-SCENARIO.txt: messages, the server's CPU per message (whole
# process, io-wq included, from /proc/PID/stat) and its samples grouped by cpu_groups.py; keeps the
# profile as OUT_DIR/SYSTEM-CLIENT-SCENARIO.data (with .pid) for a second look (SHOW=group).
set -eu
b=$1; sys=$2; client=$3; scn=$4; out=$5
here=$(cd "$(dirname "$0")" && pwd)
d=$(mktemp -d)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
if [ "$sys" = ringmx ]; then
	{ echo "hostname = mx.test"; echo "workers = 2"; echo "listen = 127.0.0.1:$port"
	  echo "data_dir = $d/data"; echo "fsync = always"; echo "accept_domains = example.test"
	  echo "max_connections = 120000"; echo "store_max_bytes = 4G"; echo "metrics_listen = off"; } > $d/ringmx.conf
	$b/ringmx -c $d/ringmx.conf > $d/log 2>&1 &
else
	smtp-sink -u nobody -m 120000 -t 300 127.0.0.1:$port 4096 > /dev/null 2>$d/log &
fi
pid=$!; sleep 0.7
newconn=""; keep="-d"
[ "$scn" = S3 ] && { newconn="--new-conn-per-message"; keep=""; }
$b/bench/ringmx-bench --server 127.0.0.1:$port --conns 100 --size 1k $newconn --duration 1.5 \
	--from a@b.test --to u@example.test >/dev/null 2>&1 || true
if [ "$client" = smtp-source ]; then
	[ "$scn" = S3 ] && n=8000 || n=40000
	run() { smtp-source -s 100 -m $n -l 1024 -f a@b.test -t u@example.test -M client.test $keep 127.0.0.1:$port; }
else
	n=0
	run() { $b/bench/ringmx-bench --server 127.0.0.1:$port --conns 100 --size 1k $newconn --duration 5 \
		--from a@b.test --to u@example.test --json $d/bench.json >/dev/null 2>&1; }
fi
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
perf record -a -g -e cpu-clock -F 999 -o $d/perf.data >/dev/null 2>&1 & pp=$!
sleep 0.3
c0=$(cpu); t0=$(date +%s.%N)
run
c1=$(cpu); t1=$(date +%s.%N)
kill -INT $pp; wait $pp || true
[ "$n" = 0 ] && n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' $d/bench.json)
hz=$(getconf CLK_TCK)
mkdir -p $out
{
	echo "system $sys client $client scenario $scn messages $n seconds $(echo "$t0 $t1" | awk '{printf "%.2f", $2-$1}')"
	echo "msgs/s $(echo "$n $t0 $t1" | awk '{printf "%.0f", $1/($3-$2)}') server_cpu_us/msg $(echo "$c0 $c1 $hz $n" | awk '{printf "%.1f", ($2-$1)/$3*1e6/$4}')"
	python3 $here/cpu_groups.py $d/perf.data $b $pid
} > $out/$sys-$client-$scn.txt
mv $d/perf.data $out/$sys-$client-$scn.data; echo $pid > $out/$sys-$client-$scn.pid
cat $out/$sys-$client-$scn.txt | head -2
kill $pid; wait $pid 2>/dev/null || true; rm -rf $d
