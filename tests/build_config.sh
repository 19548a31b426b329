#!/bin/sh
# build_config.sh CONFIG SOURCE_DIR SCRATCH_DIR
#
# One configuration of the build matrix (tests/CMakeLists.txt): configures
# SOURCE_DIR in SCRATCH_DIR (emptied first) as a packager or another
# compiler would, builds the three programs we ship with warnings as errors,
# and for the hardened build checks that the flags reached the binaries.
# CONFIG: gcc-release gcc-relwithdebinfo gcc-debug clang hardening.
# Exit 0 built, 1 failed, 77 skipped (the compiler or dpkg-buildflags is
# missing, said on stderr).
set -eu

config=$1
src=$2
dir=$3
unset CFLAGS CPPFLAGS LDFLAGS CC DEB_BUILD_OPTIONS DEB_BUILD_MAINT_OPTIONS || true

cc=gcc
cflags=
ldflags=
case $config in
gcc-release) type=Release ;;
gcc-relwithdebinfo) type=RelWithDebInfo ;;
gcc-debug) type=Debug ;;
clang) cc=clang type=Release ;;
hardening)
	# As debhelper builds a package: build type None, the flags from
	# dpkg-buildflags with every hardening feature (PIE, bindnow on top of
	# the default fortify, stack protector, relro), plus the CET
	# instrumentation newer dpkg versions add by default.
	type=None
	if ! command -v dpkg-buildflags >/dev/null 2>&1; then
		echo "skip: dpkg-buildflags is missing (Debian's dpkg-dev)" >&2
		exit 77
	fi
	export DEB_BUILD_MAINT_OPTIONS=hardening=+all
	cflags="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS) -fcf-protection"
	ldflags=$(dpkg-buildflags --get LDFLAGS)
	;;
*)
	echo "build_config.sh: unknown configuration $config" >&2
	exit 1
	;;
esac
if ! command -v "$cc" >/dev/null 2>&1; then
	echo "skip: compiler $cc is missing (make deps installs it)" >&2
	exit 77
fi

rm -rf "$dir"
CC=$cc CFLAGS=$cflags LDFLAGS=$ldflags cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=$type \
	-DRINGMX_WERROR=ON -DRINGMX_SANITIZE=OFF >"$dir.configure.log" 2>&1 ||
	{ cat "$dir.configure.log" >&2; exit 1; }
cmake --build "$dir" -j 2 --target ringmx ringmx-store ringmx-bench

[ "$config" = hardening ] || exit 0

# The flags must have reached the binaries, not only the command lines.
status=0
for bin in "$dir/ringmx" "$dir/ringmx-store" "$dir/bench/ringmx-bench"; do
	name=$(basename "$bin")
	readelf -h "$bin" | grep -q 'Type: *DYN' ||
		{ echo "$name: not a position-independent executable" >&2; status=1; }
	readelf -l "$bin" | grep -q 'GNU_RELRO' ||
		{ echo "$name: no RELRO segment" >&2; status=1; }
	readelf -d "$bin" | grep -Eq 'BIND_NOW|FLAGS.*NOW' ||
		{ echo "$name: not linked with -z now" >&2; status=1; }
	nm -D "$bin" | grep -q ' __stack_chk_fail' ||
		{ echo "$name: no stack protector" >&2; status=1; }
	nm -D "$bin" | grep -q ' __[a-z]*_chk' ||
		{ echo "$name: no fortified calls (_FORTIFY_SOURCE)" >&2; status=1; }
done
# -fcf-protection marks each of our objects; the linked binaries carry the
# mark only when every object does, and Debian 12's crt1.o does not, so the
# objects are what we check.
for obj in $(find "$dir" -name '*.c.o'); do
	readelf -n "$obj" | grep -q 'IBT, SHSTK' ||
		{ echo "$obj: no CET (IBT, SHSTK) property note" >&2; status=1; }
done
exit $status
