#!/usr/bin/env python3
"""`ringmx --version`: the version, the commit, liburing's and wolfSSL's
versions, which wolfSSL build (the accelerated private one or Debian's, the
one the binary loads), wolfSSL's acceleration and the io_uring features
this kernel grants, one `name: value` line each; the commit is the
checkout's."""

import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

VERSION_RE = re.compile(r"^ringmx \d+\.\d+\.\d+$")
FEATURE_RE = re.compile(r"^[a-z0-9_]+(\(0x[0-9a-f]+\))?$")


def version_lines():
    p = subprocess.run([h.ringmx_bin(), "--version"], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("ringmx --version exited %d: %s" % (p.returncode, p.stderr))
    lines = p.stdout.decode().splitlines()
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], fields


class VersionTest(unittest.TestCase):

    def test_every_line_present(self):
        first, f = version_lines()
        self.assertRegex(first, VERSION_RE)
        for key in ("commit", "liburing", "wolfssl", "wolfssl acceleration",
                    "io_uring features", "io_uring ops", "io_uring ops missing"):
            self.assertIn(key, f)
        self.assertRegex(f["liburing"], r"^\d+\.\d+")
        self.assertRegex(f["wolfssl"], r"^\d+\.\d+\.\d+ \(built against \d+\.\d+\.\d+\)$")
        self.assertTrue(f["wolfssl acceleration"])
        self.assertIn("wolfssl build", f)
        # This machine runs the other tests on io_uring: it has a ring.
        for word in f["io_uring features"].split():
            self.assertRegex(word, FEATURE_RE)
        self.assertIn("nodrop", f["io_uring features"].split())
        self.assertIn("accept", f["io_uring ops"].split())

    def test_commit_is_the_checkout(self):
        src = os.environ.get("RINGMX_SOURCE_DIR", "")
        git = shutil.which("git")
        if not git or not os.path.exists(os.path.join(src, ".git")):
            print("skip: no git checkout to compare the commit with")
            return
        _, f = version_lines()
        p = subprocess.run([git, "-C", src, "rev-parse", "HEAD"], capture_output=True,
                           timeout=30)
        if p.returncode != 0:
            print("skip: git rev-parse failed here")
            return
        head = p.stdout.decode().strip()
        # Taken at configure time: a later commit leaves an older one, but
        # always one of this repository's.
        self.assertRegex(f["commit"], r"^[0-9a-f]{12}$")
        p = subprocess.run([git, "-C", src, "cat-file", "-t", f["commit"]],
                           capture_output=True, timeout=30)
        self.assertEqual(p.stdout.decode().strip(), "commit", head)

    def test_wolfssl_build_is_the_one_loaded(self):
        # The build named is the library the dynamic linker resolves for the
        # binary: Debian's from the system's library directories, the
        # accelerated one from its private prefix.
        _, f = version_lines()
        build = f.get("wolfssl build", "")
        self.assertRegex(build, r"^(accelerated private build|Debian's build) \(")
        ldd = shutil.which("ldd")
        if not ldd:
            print("skip: no ldd to find the wolfSSL the binary loads")
            return
        p = subprocess.run([ldd, h.ringmx_bin()], capture_output=True, timeout=60)
        libs = [line.split("=>", 1)[1].split()[0] for line in p.stdout.decode().splitlines()
                if "libwolfssl" in line and "=>" in line]
        self.assertEqual(len(libs), 1, p.stdout.decode())
        system = re.match(r"^(/usr)?/lib(64)?/", libs[0]) is not None
        self.assertEqual(build.startswith("Debian's build"), system,
                         "--version says %r, the binary loads %s" % (build, libs[0]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
