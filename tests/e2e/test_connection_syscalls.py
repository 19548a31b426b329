#!/usr/bin/env python3
"""The system calls a connection costs the server, counted by strace on the
running server: a session that ends with QUIT makes one shutdown (the FIN
after the 221) and no setsockopt (TCP_NODELAY comes from the listener), for
each of a fixed number of sequential smtplib sessions on 127.0.0.1.
Exit 77 (skipped) where strace is missing or may not trace the server.
"""

import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

SESSIONS = 40
ATTACH_TIMEOUT_S = 10.0
SETTLE_S = 1.0  # the server closes each socket after the client's FIN


def traced(pid):
    """True when every thread of pid has a tracer."""
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                if "TracerPid:\t0\n" in f.read():
                    return False
    except OSError:
        return False
    return True


def strace_counts(path):
    """{syscall: calls} from strace -c output."""
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[-1] not in ("total", "syscall") and parts[0][0].isdigit():
                counts[parts[-1]] = int(parts[3])
    return counts


class ConnectionSyscallsTest(h.ServerTestCase, unittest.TestCase):
    settings = [("accept_domains", "example.com")]

    def test_per_session(self):
        out = tempfile.NamedTemporaryFile(prefix="strace-", suffix=".txt", delete=False)
        out.close()
        st = subprocess.Popen(["strace", "-f", "-qq", "-c", "-e", "trace=shutdown,setsockopt",
                               "-o", out.name, "-p", str(self.server.proc.pid)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + ATTACH_TIMEOUT_S
            while not traced(self.server.proc.pid):
                if st.poll() is not None or time.monotonic() > deadline:
                    raise unittest.SkipTest("strace cannot trace the server: %s"
                                            % st.stderr.read().decode(errors="replace"))
                time.sleep(0.05)
            for _ in range(SESSIONS):
                with smtplib.SMTP(h.LOOPBACK4, self.server.port, timeout=10) as s:
                    s.ehlo("client.e2e.example")
            time.sleep(SETTLE_S)
        finally:
            if st.poll() is None:
                st.send_signal(signal.SIGINT)
                st.wait(timeout=10)
        counts = strace_counts(out.name)
        os.unlink(out.name)
        self.assertEqual(counts.get("setsockopt", 0), 0, counts)
        self.assertEqual(counts.get("shutdown", 0), SESSIONS, counts)


if __name__ == "__main__":
    if shutil.which("strace") is None:
        print("strace not found (Debian package strace): skipped")
        sys.exit(77)
    prog = unittest.main(exit=False)
    r = prog.result
    if r.skipped and not r.failures and not r.errors and r.testsRun == len(r.skipped):
        sys.exit(77)
    sys.exit(0 if r.wasSuccessful() else 1)
