#!/bin/sh
# fuzz.sh - builds and runs the libFuzzer targets of tests/fuzz.
#
#   fuzz.sh build DIR                 configure and build the targets with
#                                     clang in DIR (a tree of its own)
#   fuzz.sh run DIR NAME SECONDS [CORPUS]
#                                     replay tests/fuzz/regressions/NAME, then
#                                     fuzz fuzz_NAME for SECONDS on the seeds
#                                     of tests/fuzz/corpus/NAME (with the
#                                     words of dict/NAME.dict); new inputs go
#                                     to CORPUS (kept) or to a scratch
#                                     directory in DIR (emptied first)
#   fuzz.sh all DIR SECONDS CORPUS_ROOT
#                                     run every target in turn, each keeping
#                                     its corpus in CORPUS_ROOT/NAME
#
# Exit status: 0 clean, 77 skipped (no clang or no libFuzzer runtime, or the
# target was not built), anything else a finding or a broken build. A
# finding leaves its input in DIR/artifacts; once fixed, it belongs in
# tests/fuzz/regressions/NAME/ so that every run replays it.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cc=${FUZZ_CC:-clang}
rss_mb=${FUZZ_RSS_LIMIT_MB:-2048}

usage() {
	echo "usage: $0 build DIR | run DIR NAME SECONDS [CORPUS] | all DIR SECONDS CORPUS_ROOT" >&2
	exit 2
}

build() {
	dir=$1
	if ! command -v "$cc" >/dev/null 2>&1; then
		echo "fuzz: $cc not found (Debian: clang, libclang-rt-14-dev); skipped" >&2
		exit 77
	fi
	mkdir -p "$dir"
	probe="$dir/probe.c"
	printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
		'int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) { (void)p; return (int)n & 0; }' \
		>"$probe"
	if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe" -o "$dir/probe" 2>"$dir/probe.log"; then
		cat "$dir/probe.log" >&2
		echo "fuzz: $cc cannot link libFuzzer (Debian: libclang-rt-14-dev); skipped" >&2
		exit 77
	fi
	cmake -S "$here" -B "$dir" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=None >/dev/null
	cmake --build "$dir" -j "${FUZZ_BUILD_JOBS:-2}"
}

run() {
	dir=$1 name=$2 seconds=$3 corpus=${4:-}
	bin="$dir/fuzz_$name"
	if [ ! -x "$bin" ]; then
		echo "fuzz: $bin not built; skipped" >&2
		exit 77
	fi
	regressions="$here/regressions/$name"
	seeds="$here/corpus/$name"
	if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
		echo "fuzz: $name: replaying $(ls -A "$regressions" | wc -l) regression inputs"
		"$bin" -rss_limit_mb="$rss_mb" -error_exitcode=1 "$regressions"/* \
			2>"$dir/$name.replay.log" || {
			tail -n 60 "$dir/$name.replay.log" >&2
			echo "fuzz: $name: a regression input fails again" >&2
			exit 1
		}
	fi
	if [ -z "$corpus" ]; then
		corpus="$dir/scratch/$name"
		rm -rf "$corpus"
	fi
	mkdir -p "$corpus" "$dir/artifacts"
	set -- "$corpus"
	[ -d "$seeds" ] && set -- "$@" "$seeds"
	[ -d "$regressions" ] && set -- "$@" "$regressions"
	[ -f "$here/dict/$name.dict" ] && set -- "$@" "-dict=$here/dict/$name.dict"
	echo "fuzz: $name: ${seconds}s"
	# libFuzzer's own exit status for a finding is 77, which ctest takes
	# for "skipped": a finding must fail.
	"$bin" -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=10 \
		-error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
		-artifact_prefix="$dir/artifacts/$name-" "$@" 2>"$dir/$name.log" || {
		status=$?
		tail -n 60 "$dir/$name.log" >&2
		echo "fuzz: $name found a failure: the input is in $dir/artifacts/" >&2
		exit $status
	}
	grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb)' \
		"$dir/$name.log" || true
}

[ $# -ge 2 ] || usage
case $1 in
build) build "$2" ;;
run) [ $# -ge 4 ] || usage; run "$2" "$3" "$4" "${5:-}" ;;
all)
	[ $# -eq 4 ] || usage
	failed=
	for src in "$here"/fuzz_*.c; do
		name=$(basename "$src" .c)
		name=${name#fuzz_}
		( run "$2" "$name" "$3" "$4/$name" ) || failed="$failed $name"
	done
	if [ -n "$failed" ]; then
		echo "fuzz: failures in:$failed" >&2
		exit 1
	fi
	;;
*) usage ;;
esac
