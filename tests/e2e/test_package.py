#!/usr/bin/env python3
"""The Debian package, built, checked, installed, run and purged.

`make deb` builds the package from a copy of the tree into a scratch
directory outside it (its lintian run already fails on any error or
warning; lintian is run again here so the check is this test's own). Then,
on this machine: `dpkg -i`; the ringmx user and /var/lib/ringmx (0700, the
user's) exist; the installed `ringmx --check-config` accepts the packaged
/etc/ringmx/ringmx.conf; the installed ringmx runs as the ringmx user on a
copy of that file whose listeners are moved from port 25 to free loopback
ports (and whose worker count is capped, which bounds what the store
pre-zeroes); swaks sends a message, the installed ringmx-store lists it;
SIGTERM stops the gateway with status 0; `dpkg -r` keeps the configuration
and the store; `dpkg --purge` removes the configuration and says what it
leaves.

The test changes the machine (a package, a user, /etc/ringmx, /var/lib/ringmx),
so it runs only as root and only where none of those exist yet, and it
removes all of them in every outcome. It skips (77), saying why, where
dpkg-buildpackage cannot run: not root, a tool missing, or a ringmx
already present.
"""

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

PACKAGE = "ringmx"
USER = "ringmx"
CONF_DIR = "/etc/ringmx"
CONF = "/etc/ringmx/ringmx.conf"
DATA_DIR = "/var/lib/ringmx"
SBIN = "/usr/sbin"
BUILD_TIMEOUT_S = 900
TOOL_TIMEOUT_S = 120
READY_TIMEOUT_S = 60.0     # two workers pre-zero their first segments first
STOP_TIMEOUT_S = 60.0      # the packaged shutdown_grace is 30s
WORKERS_MAX = 2
TOOLS = ("make", "dpkg-buildpackage", "dh", "lintian", "dpkg", "swaks", "deluser",
         "delgroup")


def skip(reason):
    print("skip: " + reason)
    sys.exit(h.SKIP_EXIT)


def source_dir():
    path = os.environ.get("RINGMX_SOURCE_DIR")
    if not path:
        path = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    return path


def run(argv, timeout=TOOL_TIMEOUT_S, **kw):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, **kw)


def text(p):
    return (p.stdout + p.stderr).decode("utf-8", "replace")


def package_installed():
    p = run(["dpkg-query", "-W", "-f=${Status}", PACKAGE])
    return p.returncode == 0 and b"not-installed" not in p.stdout and p.stdout != b""


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def preconditions():
    if os.geteuid() != 0:
        skip("dpkg -i and a system user need root")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        skip("missing %s (make deps installs debhelper, dpkg-dev, lintian, swaks)"
             % " ".join(missing))
    if package_installed():
        skip("a ringmx package is installed on this machine; this test would replace it")
    for path in (CONF_DIR, DATA_DIR):
        if os.path.exists(path):
            skip("%s exists on this machine; this test would change it" % path)
    if user_exists(USER) or group_exists(USER):
        skip("a user or group named %s exists on this machine" % USER)


def packaged_conf_for_test(conf_text, port, port6, metrics_port):
    """The packaged configuration with only what a test machine needs
    changed: the listeners (port 25 on every address) to loopback test
    ports, metrics_listen to a free port, and `workers` capped."""
    out, listens = [], 0
    for line in conf_text.splitlines():
        m = re.match(r"^\s*listen\s*=\s*(\S+)\s*$", line)
        if m:
            listens += 1
            if m.group(1).startswith("["):
                if port6:
                    out.append("listen = [::1]:%d" % port6)
            else:
                out.append("listen = 127.0.0.1:%d" % port)
            continue
        if re.match(r"^\s*metrics_listen\s*=", line):
            out.append("metrics_listen = 127.0.0.1:%d" % metrics_port)
            continue
        if re.match(r"^\s*workers\s*=", line):
            continue
        out.append(line)
    if listens == 0:
        raise AssertionError("the packaged %s has no listen line" % CONF)
    out.append("workers = %d" % min(WORKERS_MAX, os.cpu_count() or 1))
    return "\n".join(out) + "\n"


def wait_for_banner(port, proc, deadline_s):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(10)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            time.sleep(0.2)
    return False


class PackageTest(unittest.TestCase):

    def setUp(self):
        self.scratch = tempfile.mkdtemp(prefix="ringmx-package-")
        self.server = None
        self.installed = False

    def tearDown(self):
        # Every path ends with the machine as it was.
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
            self.server.wait(timeout=30)
        if self.installed or package_installed():
            run(["dpkg", "--purge", PACKAGE])
        if os.path.isdir(DATA_DIR):
            shutil.rmtree(DATA_DIR, ignore_errors=True)
        if user_exists(USER):
            run(["deluser", "--system", "--quiet", USER])
        if group_exists(USER):
            run(["delgroup", "--system", "--quiet", USER])
        shutil.rmtree(CONF_DIR, ignore_errors=True)
        if os.environ.get("RINGMX_E2E_KEEP") != "1":
            shutil.rmtree(self.scratch, ignore_errors=True)

    def build(self):
        out = os.path.join(self.scratch, "deb")
        p = run(["make", "-C", source_dir(), "--no-print-directory", "deb",
                 "DEB_OUT=" + out], timeout=BUILD_TIMEOUT_S)
        self.assertEqual(p.returncode, 0, "make deb failed:\n" + text(p)[-6000:])
        debs = [f for f in os.listdir(out) if re.match(r"^ringmx_.*\.deb$", f)]
        self.assertEqual(len(debs), 1, os.listdir(out))
        deb = os.path.join(out, debs[0])
        p = run(["lintian", deb], timeout=600)
        findings = [line for line in text(p).splitlines() if re.match(r"^[EW]: ", line)]
        self.assertEqual(findings, [], "lintian:\n" + text(p))
        return deb

    def check_installed(self):
        for prog in ("ringmx", "ringmx-store"):
            self.assertTrue(os.access(os.path.join(SBIN, prog), os.X_OK), prog)
        self.assertTrue(os.access("/usr/bin/ringmx-bench", os.X_OK))
        pw = pwd.getpwnam(USER)
        st = os.stat(DATA_DIR)
        self.assertEqual(st.st_uid, pw.pw_uid)
        self.assertEqual(st.st_mode & 0o777, 0o700)
        p = run(["dpkg-query", "--control-show", PACKAGE, "conffiles"])
        self.assertIn(CONF, p.stdout.decode(), text(p))
        p = run([os.path.join(SBIN, "ringmx"), "--version"])
        self.assertEqual(p.returncode, 0, text(p))
        self.assertIn("io_uring features:", p.stdout.decode())
        p = run(["man", "-w", "ringmx.conf"])
        self.assertEqual(p.returncode, 0, text(p))

    def run_installed(self):
        p = run([os.path.join(SBIN, "ringmx"), "--check-config", "-c", CONF])
        self.assertEqual(p.returncode, 0, "packaged configuration:\n" + text(p))
        with open(CONF) as f:
            packaged = f.read()
        port = h.free_port()
        port6 = h.free_port(socket.AF_INET6) if h.ipv6_loopback_available() else 0
        metrics_port = h.free_port()
        conf_dir = os.path.join(self.scratch, "conf")
        os.mkdir(conf_dir)
        os.chmod(self.scratch, 0o755)
        os.chmod(conf_dir, 0o755)
        conf = os.path.join(conf_dir, "ringmx.conf")
        with open(conf, "w") as f:
            f.write(packaged_conf_for_test(packaged, port, port6, metrics_port))
        os.chmod(conf, 0o644)
        pw = pwd.getpwnam(USER)
        log_path = os.path.join(self.scratch, "ringmx.log")
        as_user = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd="/")
        with open(log_path, "wb") as log:
            self.server = subprocess.Popen([os.path.join(SBIN, "ringmx"), "-c", conf],
                                           stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=log, **as_user)
        ready = wait_for_banner(port, self.server, READY_TIMEOUT_S)
        with open(log_path, "rb") as f:
            log_text = f.read().decode("utf-8", "replace")
        self.assertTrue(ready, "the installed ringmx did not greet:\n" + log_text)

        token = h.unique_token("pkg")
        p = run(["swaks", "--server", "127.0.0.1:%d" % port, "--from",
                 "sender@example.net", "--to", "postmaster@example.org", "--header",
                 "Subject: " + token, "--timeout", "30"])
        self.assertEqual(p.returncode, 0, "swaks:\n" + text(p))
        m = re.search(r"250 2\.0\.0 Ok: queued as ([0-9A-Fa-f]{16})", text(p))
        self.assertIsNotNone(m, text(p))
        queue_id = m.group(1)

        store = os.path.join(SBIN, "ringmx-store")
        p = run([store, "-d", DATA_DIR, "ls"], **as_user)
        self.assertEqual(p.returncode, 0, text(p))
        self.assertIn(queue_id, p.stdout.decode())
        p = run([store, "-d", DATA_DIR, "show", "--body", queue_id], **as_user)
        self.assertEqual(p.returncode, 0, text(p))
        self.assertIn("Subject: " + token, p.stdout.decode())

        self.server.send_signal(signal.SIGTERM)
        rc = self.server.wait(timeout=STOP_TIMEOUT_S)
        with open(log_path, "rb") as f:
            log_text = f.read().decode("utf-8", "replace")
        self.assertEqual(rc, 0, log_text)
        self.assertIn("event=listening address=127.0.0.1:%d" % port, log_text)
        # Everything it wrote is the ringmx user's.
        for root, dirs, files in os.walk(DATA_DIR):
            for name in dirs + files:
                st = os.lstat(os.path.join(root, name))
                self.assertEqual(st.st_uid, pw.pw_uid, os.path.join(root, name))

    def test_build_install_run_purge(self):
        deb = self.build()
        p = run(["dpkg", "-i", deb], timeout=300)
        self.installed = True
        self.assertEqual(p.returncode, 0, "dpkg -i:\n" + text(p))
        self.check_installed()
        self.run_installed()

        p = run(["dpkg", "-r", PACKAGE], timeout=300)
        self.assertEqual(p.returncode, 0, "dpkg -r:\n" + text(p))
        self.assertFalse(os.path.exists(os.path.join(SBIN, "ringmx")))
        self.assertTrue(os.path.exists(CONF), "remove keeps the conffiles")
        self.assertTrue(os.path.isdir(DATA_DIR), "remove keeps the store")

        p = run(["dpkg", "--purge", PACKAGE], timeout=300)
        self.assertEqual(p.returncode, 0, "dpkg --purge:\n" + text(p))
        self.installed = False
        self.assertFalse(package_installed())
        self.assertFalse(os.path.exists(CONF), "purge removes the configuration")
        self.assertIn("purge keeps the mail store /var/lib/ringmx", text(p))


if __name__ == "__main__":
    preconditions()
    unittest.main(verbosity=2)
