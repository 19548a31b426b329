#!/usr/bin/env python3
"""Start-up and shut-down: config file errors (exit 2, 'FILE:LINE:' on
stderr), units in durations and sizes, comments, IPv4 + IPv6 listeners,
the embedded defaults, SIGTERM / SIGINT (exit 0, a transaction in progress
still completes within shutdown_grace, 421 to the idle ones, one that
outlives the grace gets 421), and a restart on the same data_dir.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import shutil
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402


class ConfigErrorTest(unittest.TestCase):

    def bad_config(self, lines, bad_line):
        """lines: config lines; bad_line: 1-based number of the bad one."""
        tmp = tempfile.mkdtemp(prefix="ringmx-e2e-cfg-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "bad.conf")
        text = "\n".join(l.replace("DATA", os.path.join(tmp, "data")) for l in lines) + "\n"
        with open(path, "w") as f:
            f.write(text)
        try:
            cp = subprocess.run([h.ringmx_bin(), "-c", path], capture_output=True,
                                stdin=subprocess.DEVNULL, timeout=30, cwd=tmp)
        except subprocess.TimeoutExpired:
            self.fail("ringmx kept running with a bad config:\n" + text)
        err = cp.stderr.decode("latin-1")
        self.assertEqual(cp.returncode, 2, "exit status %d for config:\n%s\nstderr: %s"
                         % (cp.returncode, text, err))
        self.assertIn("%s:%d:" % (path, bad_line), err,
                      "stderr does not name %s:%d; config:\n%sstderr: %s"
                      % (path, bad_line, text, err))
        for marker in h.SANITIZER_MARKERS:
            self.assertNotIn(marker.decode(), err)
        return err

    def base(self, port):
        return ["# e2e config", "workers = 1", "listen = 127.0.0.1:%d" % port,
                "data_dir = DATA"]

    def test_unknown_key(self):
        lines = self.base(h.free_port()) + ["", "no_such_key = 1"]
        err = self.bad_config(lines, 6)
        self.assertIn("no_such_key", err)

    def test_bad_duration(self):
        for bad in ("5x", "s", "-1s", "1.5s", "99999999999999999999s"):
            with self.subTest(value=bad):
                self.bad_config(self.base(h.free_port()) + ["command_timeout = %s" % bad], 5)

    def test_bad_size(self):
        for bad in ("10Q", "M", "-5", "1.5M", "99999999999999999999", "12kk"):
            with self.subTest(value=bad):
                self.bad_config(self.base(h.free_port()) + ["# a comment",
                                                            "max_message_size = %s" % bad], 6)

    def test_other_bad_values(self):
        cases = [("fsync = sometimes", "fsync"), ("bare_newline = maybe", "bare_newline"),
                 ("listen = 127.0.0.1", "listen"), ("listen = [::1]", "listen"),
                 ("workers = 0", "workers"), ("workers = many", "workers"),
                 ("max_connections = 0", "max_connections"),
                 ("max_command_line = 100", "max_command_line"),
                 ("segment_size = 1k", "segment_size"),
                 ("hostname = two words", "hostname"),
                 ("this line has no equals sign", None)]
        for line, _ in cases:
            with self.subTest(line=line):
                self.bad_config(self.base(h.free_port()) + [line], 5)

    def start_failure(self, srv, what):
        """The server must exit non-zero by itself, naming what is wrong."""
        self.addCleanup(srv.cleanup)
        srv.start(wait=False)
        status = srv.wait_exit(30)
        self.assertIsNotNone(status, "ringmx kept running with %s" % what)
        self.assertNotEqual(status, 0, "exit status 0 with %s" % what)
        srv.check_stderr(self)
        return srv.stderr_text()

    def test_port_in_use(self):
        with socket.socket() as s:
            s.bind((h.LOOPBACK4, 0))
            s.listen(1)
            port = s.getsockname()[1]
            srv = h.Server(listen=["127.0.0.1:%d" % port])
            err = self.start_failure(srv, "its listen port held by another program")
            self.assertIn(str(port), err, "stderr does not name the address: " + err)

    def test_data_dir_is_a_file(self):
        srv = h.Server()
        with open(srv.data_dir, "w") as f:
            f.write("not a directory\n")
        err = self.start_failure(srv, "data_dir naming a regular file")
        self.assertIn(srv.data_dir, err, "stderr does not name data_dir: " + err)

    def test_missing_config_file(self):
        cp = subprocess.run([h.ringmx_bin(), "-c", "/nonexistent/ringmx-e2e.conf"],
                            capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
        self.assertNotEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("/nonexistent/ringmx-e2e.conf", cp.stderr.decode("latin-1"))


class StartupTest(unittest.TestCase):

    def start(self, settings, workers=2, **kw):
        srv = h.Server(settings=settings, workers=workers, **kw)
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop_checked, self)
        return srv

    def test_units_and_comments(self):
        srv = self.start([("command_timeout", "5m"), ("idle_timeout", "2h"),
                          ("data_timeout", "30s"), ("shutdown_grace", "5"),
                          ("max_message_size", "10k"), ("max_inflight_data_bytes", "64M"),
                          ("store_max_bytes", "1G"), ("max_command_line", "4096")],
                         extra_lines=["# trailing comment", "", "   # indented comment",
                                      "idle_timeout = 1d"])
        with srv.conn() as c:
            r = c.cmd("EHLO units.example")
            size = h.ehlo_keywords(r).get("SIZE")
            self.assertIn(size, (["10240"], ["10000"]), "SIZE for max_message_size = 10k: %r"
                          % r.text)

    def test_ipv4_and_ipv6_listeners(self):
        if not h.ipv6_loopback_available():
            self.skipTest("::1 is not available on this machine")
        p4, p6 = h.free_port(), h.free_port(socket.AF_INET6)
        srv = self.start([], listen=["127.0.0.1:%d" % p4, "[::1]:%d" % p6])
        srv.wait_ready(host=h.LOOPBACK6, port=p6)
        ids = {}
        for host, port in ((h.LOOPBACK4, p4), (h.LOOPBACK6, p6)):
            with srv.conn(host=host, port=port) as c:
                body = ("Subject: via %s\r\n\r\n%s\r\n" % (host, h.unique_token("v6"))).encode()
                ids[host] = (h.send_message(self, c, body, helo="dual.example"), body)
        for host, (qid, body) in ids.items():
            received, rest = h.split_received(srv.show_body(qid))
            self.assertEqual(rest, body)
            h.check_received(self, received, "dual.example", host, qid)

    def test_defaults_without_config(self):
        # Embedded defaults: 127.0.0.1:2525, localhost, ./ringmx-data.
        try:
            with socket.socket() as s:
                s.bind((h.LOOPBACK4, 2525))
        except OSError:
            self.skipTest("127.0.0.1:2525 is in use on this machine")
        srv = h.Server()
        self.addCleanup(srv.cleanup)
        srv.hostname = socket.gethostname()
        srv.start(wait=False, args=[], cwd=srv.tmp)
        self.addCleanup(srv.stop_checked, self)
        deadline = time.monotonic() + h.READY_TIMEOUT_S
        c = None
        while c is None:
            self.assertTrue(srv.running(), "ringmx without -c exited: " + srv.stderr_text())
            try:
                c = h.SmtpConn(2525)
            except OSError:
                self.assertLess(time.monotonic(), deadline, "no banner on 127.0.0.1:2525")
                time.sleep(0.1)
        with c:
            h.assert_reply(self, c.banner, 220)
            self.assertRegex(c.banner.text, r"^220 \S+ ESMTP ringmx")
            qid = h.send_message(self, c, b"Subject: defaults\r\n\r\nx\r\n",
                                 rcpts=("postmaster@localhost",), helo="defaults.example")
            self.expect_relay_denied(c)
        srv.data_dir = os.path.join(srv.tmp, "ringmx-data")
        self.assertTrue(os.path.isdir(srv.data_dir), "./ringmx-data was not created")
        self.assertIn(qid, srv.ls_ids())

    def expect_relay_denied(self, c):
        h.assert_reply(self, c.cmd("MAIL FROM:<a@client.example>"), 250, "2.1.0")
        h.assert_reply(self, c.cmd("RCPT TO:<user@example.com>"), 554, "5.7.1", sent=c.sent)

    def test_restart_keeps_messages(self):
        srv = h.Server()
        self.addCleanup(srv.cleanup)
        srv.start()
        with srv.conn() as c:
            qid1 = h.send_message(self, c, b"Subject: one\r\n\r\nfirst\r\n", helo="r.example")
        srv.stop_checked(self)
        srv.start()
        with srv.conn() as c:
            qid2 = h.send_message(self, c, b"Subject: two\r\n\r\nsecond\r\n", helo="r.example")
        self.assertNotEqual(qid1, qid2)
        ids = srv.ls_ids()
        self.assertIn(qid1, ids)
        self.assertIn(qid2, ids)
        srv.stop_checked(self)
        # fewer workers than before: the other shard's mail is still read
        srv2 = h.Server(settings=[("data_dir", srv.data_dir)], workers=1)
        self.addCleanup(srv2.cleanup)
        srv2.data_dir = srv.data_dir
        srv2.start()
        self.addCleanup(srv2.stop_checked, self)
        cp = srv2.verify()
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        ids = srv2.ls_ids()
        self.assertIn(qid1, ids)
        self.assertIn(qid2, ids)
        with srv2.conn() as c:
            qid3 = h.send_message(self, c, b"Subject: three\r\n\r\nthird\r\n", helo="r.example")
        self.assertNotIn(qid3, (qid1, qid2))


class ShutdownTest(unittest.TestCase):

    def start(self, grace_s):
        srv = h.Server(settings=[("shutdown_grace", "%ds" % grace_s)])
        self.addCleanup(srv.cleanup)
        srv.start()
        return srv

    def open_data(self, srv, token):
        c = srv.conn()
        h.assert_reply(self, c.cmd("EHLO shut.example"), 250)
        h.assert_reply(self, c.cmd("MAIL FROM:<s@client.example>"), 250, "2.1.0")
        h.assert_reply(self, c.cmd("RCPT TO:<user@example.com>"), 250, "2.1.5")
        h.assert_reply(self, c.cmd("DATA"), 354)
        c.send(b"Subject: " + token + b"\r\n\r\nfirst half\r\n")
        return c

    def test_sigterm_idle(self):
        srv = self.start(5)
        t0 = time.monotonic()
        self.assertEqual(srv.stop_checked(self), 0)
        self.assertLess(time.monotonic() - t0, 5, "an idle server took long to stop")

    def test_sigint(self):
        srv = self.start(5)
        self.assertEqual(srv.stop_checked(self, sig=signal.SIGINT), 0)

    def idle_connections_at_sigterm(self, client_closes):
        """Idle sessions (after the banner, after EHLO, after a finished
        message) get 421 4.3.2 and a close at once; the server then exits 0
        well within shutdown_grace, whether or not the clients close their end."""
        grace_s = 3
        srv = self.start(grace_s)
        conns = [srv.conn(), srv.conn(), srv.conn()]
        self.addCleanup(lambda: [c.close() for c in conns])
        h.assert_reply(self, conns[1].cmd("EHLO idle.example"), 250)
        h.send_message(self, conns[2], b"Subject: done\r\n\r\ndone\r\n", helo="idle.example")
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        for i, c in enumerate(conns):
            replies, closed = c.replies_until_close()
            texts = [r.text for r in replies]
            self.assertTrue(replies and (replies[-1].code, replies[-1].enhanced) == (421, "4.3.2"),
                            "idle connection %d at SIGTERM: %r" % (i, texts))
            self.assertTrue(closed, "idle connection %d not closed after 421" % i)
            if client_closes:
                c.close()
        status = srv.wait_exit(grace_s + 10)
        elapsed = time.monotonic() - t0
        self.assertIsNotNone(status, "ringmx still running %.0fs after SIGTERM with "
                             "shutdown_grace %ds (idle clients %s); stderr:\n%s"
                             % (elapsed, grace_s, "closed" if client_closes else "kept open",
                                srv.stderr_text()[-2000:]))
        self.assertEqual(status, 0, srv.stderr_text()[-3000:])
        self.assertLess(elapsed, grace_s + 3, "exit took %.1fs" % elapsed)
        srv.check_stderr(self)

    def test_sigterm_idle_connections_clients_close(self):
        self.idle_connections_at_sigterm(client_closes=True)

    def test_sigterm_idle_connections_clients_stay(self):
        self.idle_connections_at_sigterm(client_closes=False)

    def test_transaction_completes_within_grace(self):
        srv = self.start(8)
        token = h.unique_token("grace").encode()
        c = self.open_data(srv, token)
        idle = srv.conn()
        h.assert_reply(self, idle.cmd("EHLO idle.example"), 250)
        srv.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        self.assertTrue(srv.running(), "exited with a transaction in progress: "
                        + srv.stderr_text())
        # the idle session is told to go away
        replies, closed = idle.replies_until_close()
        idle.close()
        self.assertTrue(replies and replies[-1].code == 421,
                        "idle connection during shutdown: %r" % [r.text for r in replies])
        self.assertEqual(replies[-1].enhanced, "4.3.2", replies[-1].text)
        self.assertTrue(closed)
        # new connections are not served
        try:
            with h.SmtpConn(srv.port, timeout=3, read_banner=False) as n:
                r = n.reply()
                self.assertNotEqual(r.code, 220, "a new connection was greeted after SIGTERM")
        except (OSError, h.Closed):
            pass
        # the transaction finishes
        c.send(b"second half\r\n.\r\n")
        qid = h.queued_id(self, c.reply(), b"second half\r\n.\r\n")
        try:
            c.cmd("QUIT")
        except (OSError, h.Closed):
            pass
        c.close()
        t0 = time.monotonic()
        status = srv.wait_exit(15)
        self.assertEqual(status, 0, "exit status after SIGTERM: %r; stderr:\n%s"
                         % (status, srv.stderr_text()[-3000:]))
        self.assertLess(time.monotonic() - t0, 8, "did not exit soon after the last "
                        "transaction finished")
        srv.check_stderr(self)
        body = h.split_received(srv.show_body(qid))[1]
        self.assertEqual(body, b"Subject: " + token + b"\r\n\r\nfirst half\r\nsecond half\r\n")

    def test_grace_expires(self):
        srv = self.start(2)
        c = self.open_data(srv, h.unique_token("late").encode())
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        replies, closed = c.replies_until_close()
        c.close()
        self.assertTrue(replies and replies[-1].code == 421,
                        "transaction past shutdown_grace: %r" % [r.text for r in replies])
        status = srv.wait_exit(20)
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 0, srv.stderr_text()[-3000:])
        self.assertGreater(elapsed, 1.0, "did not wait for shutdown_grace")
        self.assertLess(elapsed, 10, "took %.1fs with shutdown_grace 2s" % elapsed)
        srv.check_stderr(self)
        self.assertEqual(srv.ls(), [], "the unfinished transaction was stored")


if __name__ == "__main__":
    unittest.main()
