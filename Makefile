# Thin wrapper around CMake. The two commands a new machine needs:
#   make run    install what is needed, build, run the gateway on its defaults
#   make test   install what is needed, build with the sanitizers, run every test
# Other targets: make deps, make (release build), make clean,
#   make bench  the side-by-side comparison with Postfix and Haraka (about 30 min)
#   make fuzz   every fuzz target of tests/fuzz, FUZZ_SECONDS (600) each
#   make deb    the Debian package in DEB_OUT (build-deb), checked by lintian

BUILD      ?= build
TEST_BUILD ?= build-test
JOBS       ?= $(shell nproc)

# Debian packages for building, running and testing.
DEB_PACKAGES = build-essential clang libclang-rt-14-dev cmake pkg-config liburing-dev libwolfssl-dev xfsprogs \
               libjemalloc-dev libcrypt-dev python3 swaks libnet-ssleay-perl openssl postfix procps curl \
               prometheus testssl.sh
# Building and checking the Debian package (make deb) and its man pages; in
# make deps too, so that make test builds, checks and installs the package.
DEB_BUILD_PACKAGES = debhelper dpkg-dev lintian man-db adduser
DEB_PACKAGES += $(DEB_BUILD_PACKAGES)
# The PROXY protocol's end-to-end test puts a private HAProxy in front.
DEB_PACKAGES += haproxy
# e2e test_connection_syscalls counts a connection's system calls with strace.
DEB_PACKAGES += strace

.PHONY: all deps build run test clean

# make bench: Debian packages the comparison needs on top of DEB_PACKAGES
# (npm comes with Node.js from some sources, so it is installed only when
# missing), Haraka from npm into bench/.haraka, then the full run.
# BENCH_ARGS passes options to bench/compare/compare.py (--help lists them).
BENCH_DEB_PACKAGES = gnuplot-nox postfix nodejs procps
BENCH_ARGS ?=

.PHONY: bench bench-deps

all: build

deps:
	@if dpkg-query -W -f='$${Status}\n' $(DEB_PACKAGES) 2>/dev/null | \
	    grep -vq '^install ok installed$$' || \
	    [ $$(dpkg-query -W -f='$${Status}\n' $(DEB_PACKAGES) 2>/dev/null | wc -l) -ne $(words $(DEB_PACKAGES)) ]; then \
		echo "ringmx: installing Debian packages: $(DEB_PACKAGES)"; \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
		apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PACKAGES); \
	else \
		echo "ringmx: build and test packages already installed"; \
	fi
	@# wolfSSL with AES-NI and assembly from Debian's source (cached; falls
	@# back to libwolfssl-dev with a WARNING when it cannot be built)
	@sh tools/build-wolfssl.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j $(JOBS)

run: deps build
	@echo "ringmx: starting on the embedded defaults (Ctrl-C to stop)"
	@echo "ringmx: send a test message with:"
	@echo "  swaks --server 127.0.0.1:2525 --to postmaster@localhost --from you@example.org"
	@echo "ringmx: then look at it with: $(BUILD)/ringmx-store -d ringmx-data ls"
	$(BUILD)/ringmx

test: deps
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DRINGMX_SANITIZE=ON -DRINGMX_WERROR=ON
	cmake --build $(TEST_BUILD) -j $(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure -j 2

clean:
	rm -rf $(BUILD) $(TEST_BUILD)

bench-deps: deps
	@missing=$$(for p in $(BENCH_DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || \
	    echo $$p; done; command -v npm >/dev/null 2>&1 || echo npm); \
	if [ -n "$$missing" ]; then \
		echo "ringmx: installing Debian packages for the benchmark: $$missing"; \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
		apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else \
		echo "ringmx: benchmark packages already installed"; \
	fi
	python3 bench/compare/compare.py --install-haraka-only

bench: bench-deps build
	python3 bench/compare/compare.py --build-dir $(BUILD) $(BENCH_ARGS)

# make fuzz: every libFuzzer target of tests/fuzz for FUZZ_SECONDS each, one
# after the other, built with clang in FUZZ_BUILD; what they learn is kept
# in FUZZ_BUILD/corpus/<name> (outside git) and grows from run to run.
# A finding stops nothing: the others still run, and the status says which.
FUZZ_BUILD   ?= build-fuzz-long
FUZZ_SECONDS ?= 600

.PHONY: fuzz

fuzz: deps
	sh tests/fuzz/fuzz.sh build $(FUZZ_BUILD)
	sh tests/fuzz/fuzz.sh all $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_BUILD)/corpus

# make deb: the Debian package (debian/), built from a copy of the tree's
# files (tracked and new, not ignored) in DEB_OUT/src, so the tree itself
# gets no build files; the .deb lands in DEB_OUT and must be lintian clean
# (no error, no warning). It links Debian's libwolfssl, not the private
# build (debian/rules). Installs its build dependencies first.
DEB_OUT ?= build-deb

.PHONY: deb deb-deps

deb-deps:
	@missing=$$(for p in $(DEB_BUILD_PACKAGES) build-essential cmake pkg-config liburing-dev \
	    libwolfssl-dev libjemalloc-dev libcrypt-dev; do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || \
	    echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "ringmx: installing Debian packages for make deb: $$missing"; \
		apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

deb: deb-deps
	rm -rf $(DEB_OUT)/src $(DEB_OUT)/ringmx_* $(DEB_OUT)/ringmx-dbgsym_*
	mkdir -p $(DEB_OUT)/src
	if [ -e .git ]; then \
		git ls-files -z --cached --others --exclude-standard | \
		    tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(DEB_OUT)/src; \
	else \
		tar --exclude='./build*' -cf - . | tar -xf - -C $(DEB_OUT)/src; \
	fi
	cd $(DEB_OUT)/src && \
	    RINGMX_GIT_COMMIT=$$(git -C $(CURDIR) rev-parse --short=12 HEAD 2>/dev/null || echo unknown) \
	    dpkg-buildpackage -us -uc -b
	lintian --fail-on error,warning $(DEB_OUT)/ringmx_*.deb
	@echo "ringmx: package in $(DEB_OUT):" && ls $(DEB_OUT)/*.deb
