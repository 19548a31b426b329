#!/bin/sh
# build-wolfssl.sh - builds wolfSSL with AES-NI and the assembly of its
# single-precision math, from Debian's own source package, into a private
# prefix that CMake searches first (option RINGMX_PRIVATE_WOLFSSL).
#
# Debian's libwolfssl is configured without AES-NI, the Intel assembly and
# the SP math assembly: AES-GCM runs at a few hundred MB/s and a TLS 1.3
# handshake costs about 4x the server CPU. The same source, configured with
# Debian's options plus --enable-aesni --enable-intelasm --enable-sp
# --enable-sp-asm, gives the gateway its TLS speed (README: TLS).
#
# The source is fetched through a private apt configuration (a deb-src entry
# made from the Debian mirror URIs of this machine's own apt sources); the
# machine's apt sources and lists are not touched. The build dependencies
# come from Debian. The version is the one of the installed libwolfssl-dev,
# so headers and library agree with what Debian ships.
#
# Cached: when PREFIX is complete, the script does nothing. On any failure it
# prints a WARNING and exits 0: the build then falls back to Debian's
# libwolfssl-dev.
#
# Usage: tools/build-wolfssl.sh            (as root; make deps calls it)
# Environment: RINGMX_WOLFSSL_ROOT (default /opt/ringmx), the folder of the
# versioned prefixes; RINGMX_WOLFSSL_WORK, the scratch folder (default a new
# temporary one, removed at the end).
set -u

root=${RINGMX_WOLFSSL_ROOT:-/opt/ringmx}
accel_options="--enable-aesni --enable-intelasm --enable-sp --enable-sp-asm"

fallback() {
	echo "ringmx: WARNING: accelerated wolfSSL not built: $*" >&2
	echo "ringmx: WARNING: the build falls back to Debian's libwolfssl-dev" \
	     "(no AES-NI, no assembly: several times slower TLS)" >&2
	exit 0
}

version=$(dpkg-query -W -f='${Version}' libwolfssl-dev 2>/dev/null) ||
	fallback "libwolfssl-dev is not installed (its version picks the source)"
[ -n "$version" ] || fallback "no version for libwolfssl-dev"
prefix="$root/wolfssl-$version-accel"

# A prefix is complete with its marker and its own options.h: without that
# header a program would compile against Debian's settings while linking
# this library (struct layouts differ with AES-NI), so an older prefix
# lacking it is built again.
if [ -f "$prefix/.ringmx-complete" ] && [ -f "$prefix/include/wolfssl/options.h" ]; then
	echo "ringmx: accelerated wolfSSL $version already in $prefix"
	exit 0
fi
[ "$(id -u)" = 0 ] || fallback "must run as root to install build dependencies into $root"
case "$(uname -m)" in
x86_64) ;;
*) fallback "the acceleration options are for x86-64, this is $(uname -m)" ;;
esac

if [ -n "${RINGMX_WOLFSSL_WORK:-}" ]; then
	work=$RINGMX_WOLFSSL_WORK
	mkdir -p "$work" || fallback "cannot make $work"
else
	work=$(mktemp -d /tmp/ringmx-wolfssl.XXXXXX) || fallback "cannot make a scratch folder"
	trap 'rm -rf "$work"' EXIT
fi
echo "ringmx: building accelerated wolfSSL $version into $prefix (about a minute)"

# The private apt configuration: every Debian entry of the machine's sources,
# binary and source, in a folder of our own with its own lists and cache.
apt_dir="$work/apt"
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" \
	"$apt_dir/cache/archives/partial" || fallback "cannot make $apt_dir"
: >"$apt_dir/sources.list"
debian_uri='https?://[^ ]*/debian(-security|-ports)?/?$'
if [ -f /etc/apt/sources.list ]; then
	grep -E "^deb[[:space:]]" /etc/apt/sources.list |
		awk -v re="$debian_uri" '{ for (i = 2; i <= NF; i++) if ($i !~ /^\[/) break;
			if ($i ~ re) { print; sub(/^deb/, "deb-src"); print } }' \
		>>"$apt_dir/sources.list"
fi
for f in /etc/apt/sources.list.d/*.list; do
	[ -f "$f" ] || continue
	grep -E "^deb[[:space:]]" "$f" |
		awk -v re="$debian_uri" '{ for (i = 2; i <= NF; i++) if ($i !~ /^\[/) break;
			if ($i ~ re) { print; sub(/^deb/, "deb-src"); print } }' \
		>>"$apt_dir/sources.list"
done
n=0
for f in /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] || continue
	# deb822 stanzas: keep those whose URIs are a Debian archive, and
	# make them carry both types.
	awk -v re="$debian_uri" '
		function flush() { if (keep) printf "%s\n", stanza; stanza = ""; keep = 0 }
		/^[[:space:]]*$/ { flush(); next }
		/^#/ { next }
		/^Types:/ { $0 = "Types: deb deb-src" }
		/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ re) keep = 1 }
		{ stanza = stanza $0 "\n" }
		END { flush() }' "$f" >"$apt_dir/sources.list.d/debian-$n.sources"
	n=$((n + 1))
done
grep -qE '^(deb|Types)' "$apt_dir/sources.list" "$apt_dir"/sources.list.d/* 2>/dev/null ||
	fallback "no Debian mirror in /etc/apt/sources.list(.d)"

apt_private() {
	apt-get -o Dir::Etc::SourceList="$apt_dir/sources.list" \
		-o Dir::Etc::SourceParts="$apt_dir/sources.list.d" \
		-o Dir::State::Lists="$apt_dir/lists" \
		-o Dir::Cache="$apt_dir/cache" "$@"
}

apt_private update >"$work/apt-update.log" 2>&1 ||
	fallback "apt-get update of the private sources failed (see $work/apt-update.log)"
DEBIAN_FRONTEND=noninteractive apt_private build-dep -y --no-install-recommends \
	"wolfssl=$version" >"$work/build-dep.log" 2>&1 ||
	fallback "installing the build dependencies of wolfssl $version failed"
(cd "$work" && apt_private source --download-only "wolfssl=$version") \
	>"$work/source.log" 2>&1 || fallback "apt-get source wolfssl=$version failed"
dsc=$(ls "$work"/wolfssl_*.dsc 2>/dev/null | head -n 1)
[ -n "$dsc" ] || fallback "no .dsc downloaded"
src="$work/src"
dpkg-source -x "$dsc" "$src" >"$work/unpack.log" 2>&1 || fallback "dpkg-source -x failed"

# Debian's own configure options, read from its debian/rules
# (override_dh_auto_configure), so that the build differs from Debian's by
# the acceleration only.
distro_options=$(sed -n '/dh_auto_configure --/,/^[^[:space:]]/p' "$src/debian/rules" |
	grep -oE -- '--(enable|disable|with|without)-[A-Za-z0-9_=.-]+' | tr '\n' ' ')
[ -n "$distro_options" ] || distro_options="--enable-distro"
echo "ringmx: wolfSSL options: $distro_options$accel_options"

stage="$work/stage"
(
	set -e
	cd "$src"
	export DEB_BUILD_MAINT_OPTIONS=hardening=+all
	CFLAGS=$(dpkg-buildflags --get CFLAGS)
	CPPFLAGS=$(dpkg-buildflags --get CPPFLAGS)
	LDFLAGS=$(dpkg-buildflags --get LDFLAGS)
	export CFLAGS CPPFLAGS LDFLAGS
	./autogen.sh
	# shellcheck disable=SC2086 # the option lists are word lists
	./configure --prefix="$prefix" $distro_options $accel_options
	make -j "$(nproc)"
	make install DESTDIR="$stage"
	# The settings this library was built with: Debian's source does not
	# install the generated header, and CMake must not find Debian's.
	install -m 0644 wolfssl/options.h "$stage$prefix/include/wolfssl/options.h"
) >"$work/build.log" 2>&1 || {
	tail -n 20 "$work/build.log" >&2
	fallback "configure or make of wolfSSL $version failed"
}

# Into place in one rename, so that a half-installed prefix is never seen.
mkdir -p "$root" || fallback "cannot make $root"
rm -rf "$prefix.new" && mv "$stage$prefix" "$prefix.new" &&
	printf '%s\n' "$version $distro_options$accel_options" >"$prefix.new/.ringmx-complete" &&
	rm -rf "$prefix" && mv "$prefix.new" "$prefix" ||
	fallback "cannot install into $prefix"
echo "ringmx: accelerated wolfSSL $version installed in $prefix"
