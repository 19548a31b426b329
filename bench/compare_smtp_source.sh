#!/bin/sh
# compare_smtp_source.sh - ringmx-bench next to Postfix's smtp-source, on one
# Postfix smtp-sink, interleaved, so both clients see the same machine.
#
#   bench/compare_smtp_source.sh BENCH_BINARY [MESSAGES [ROUNDS [PORT]]]
#
# Starts `smtp-sink -u nobody 127.0.0.1:PORT 1000` (needs root for -u), then
# per round runs ringmx-bench with pipelining on and off and
# `smtp-source -s 100 -m MESSAGES -l 1024 -d`, all with 100 sessions and 1 KiB
# messages, and prints each client's msgs/s and CPU per 1000 messages and the
# sink's CPU per 1000 messages. The sink is stopped at the end.
set -eu

bench=${1:?usage: $0 BENCH_BINARY [MESSAGES [ROUNDS [PORT]]]}
messages=${2:-100000}
rounds=${3:-3}
port=${4:-26001}
ticks=$(getconf CLK_TCK)

for tool in smtp-sink smtp-source; do
	command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
		echo "$0: $tool not found (Debian package postfix)" >&2
		exit 1
	}
done
PATH=$PATH:/usr/sbin

smtp-sink -u nobody "127.0.0.1:$port" 1000 </dev/null >/dev/null 2>&1 &
sink=$!
trap 'kill "$sink" 2>/dev/null || true' EXIT INT TERM
sleep 0.5
kill -0 "$sink" || { echo "$0: smtp-sink did not start" >&2; exit 1; }

# CPU seconds (user + system) of a process, from /proc/PID/stat fields 14, 15,
# counted after the command name (which may hold spaces).
cpu_ticks() {
	sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

echo "client                msgs/s    client-cpu/1000  sink-cpu/1000"
round=1
while [ "$round" -le "$rounds" ]; do
	for mode in on off; do
		"$bench" --server "127.0.0.1:$port" --conns 100 --messages "$messages" \
			--size 1k --pipelining "$mode" --pid "$sink" --json - 2>/dev/null |
		python3 -c 'import json,sys; r=json.load(sys.stdin); print("bench pipelining %-3s %9.0f %12.4f s %12.4f s" % (sys.argv[1], r["msgs_per_s"], r["bench_cpu_s_per_1000"], r["server_cpu_s_per_1000"]))' "$mode"
	done
	s0=$(cpu_ticks "$sink")
	# wall time and CPU (user + system) of smtp-source, as "WALL CPU"
	out=$(python3 -c '
import resource, subprocess, sys, time
t = time.monotonic()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.monotonic() - t, ru.ru_utime + ru.ru_stime)' \
		smtp-source -s 100 -m "$messages" -l 1024 -d "127.0.0.1:$port")
	s1=$(cpu_ticks "$sink")
	echo "$out $s0 $s1 $messages $ticks" | awk '{
		printf "smtp-source           %9.0f %12.4f s %12.4f s\n", $5 / $1,
			$2 * 1000 / $5, ($4 - $3) / $6 * 1000 / $5 }'
	round=$((round + 1))
done
