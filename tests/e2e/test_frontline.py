#!/usr/bin/env python3
"""The front line, end to end: per-client limits, pre-greeting screening,
the error budget and output back-pressure, against the real gateway.

- max_connections_per_ip: the next connection gets 421 4.7.0 at connect and
  nothing it sent is answered; closing one lets a new one in; the count is
  shared by the workers; loopback is exempt by default; IPv6 clients count.
- max_connection_rate_per_ip: 421 4.7.0 past the rate within a minute.
- max_message_rate_per_ip: 451 4.7.1 at MAIL past the rate, the session
  goes on (smtplib).
- greet_pause: "220-" at once, "220 " after the pause; a client that passed
  is not paused again; greet_action drop (521 5.5.1, the early command never
  answered), enforce (550 5.5.1 to every RCPT), ignore; screen_cache_ttl = 0
  remembers nothing; an HTTP request as the first command gets 521 and
  close, a first line ended by a bare LF 550 5.5.2 and close;
  ringmx_screen_verdicts_total counts each verdict.
- the error budget: past soft_error_limit each error reply waits
  error_sleep_time, the hard_error_limit-th error ends the session with
  421 4.7.0; a NOOP flood past junk_command_limit ends the same way; while a
  reply is held the (only) worker serves another client at once.
- a client that does not read its replies stops being read.

Each test starts its own server on 127.0.0.1 (and ::1 where it exists); its
readiness is probed on the metrics port, so no SMTP probe counts against a
limit or leaves a screening verdict behind.
"""

import os
import re
import select
import smtplib
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

BANNER_FIRST_S = 0.5     # a reply sent "at once" arrives within this (ASan build)
PAUSE_S = 1              # greet_pause and error_sleep_time in these tests
PAUSE_MIN_S = 0.9        # the least a held reply may take
SERVED_AT_ONCE_S = 0.3   # a second client's EHLO while a reply is held
SETTLE_S = 5.0           # bound on the server noticing a close


def http_get(port, path, timeout=5):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def read_line(c, timeout):
    """One reply line (CRLF stripped) within timeout; raises socket.timeout."""
    old = c.sock.gettimeout()
    c.sock.settimeout(timeout)
    try:
        return c.readline()
    finally:
        c.sock.settimeout(old)


def connect_raw(port, host=h.LOOPBACK4):
    """A connected SmtpConn that has read nothing yet."""
    return h.SmtpConn(port, host=host, read_banner=False)


class FrontlineCase(unittest.TestCase):
    """Starts one server per test, with a metrics port for readiness."""

    def start(self, settings, workers=2, listen=None):
        self.mport = h.free_port()
        settings = [("metrics_listen", "127.0.0.1:%d" % self.mport)] + list(settings)
        srv = h.Server(settings=settings, workers=workers, listen=listen)
        self.addCleanup(srv.cleanup)
        srv.start(wait=False)
        deadline = time.monotonic() + h.READY_TIMEOUT_S
        while True:
            if not srv.running():
                self.fail("ringmx exited at start-up; stderr:\n%s" % srv.stderr_text()[-3000:])
            try:
                if http_get(self.mport, "/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.fail("ringmx not ready within %.0fs; stderr:\n%s"
                          % (h.READY_TIMEOUT_S, srv.stderr_text()[-3000:]))
            time.sleep(0.05)
        self.srv = srv
        return srv

    def finish(self):
        self.srv.stop_checked(self)

    def metrics(self):
        status, body = http_get(self.mport, "/metrics")
        self.assertEqual(status, 200)
        return h.metric_samples(body.decode())

    def screen_count(self, verdict):
        return self.metrics().get('ringmx_screen_verdicts_total{verdict="%s"}' % verdict, 0.0)

    def wait_metric(self, verdict, want, timeout=SETTLE_S):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.screen_count(verdict)
            if got >= want:
                return got
            time.sleep(0.05)
        self.fail("ringmx_screen_verdicts_total{verdict=%r} is %r, expected %r"
                  % (verdict, got, want))

    def log_lines(self, start=0, event=None):
        text = self.srv.stderr_text()[start:]
        lines = text.splitlines()
        if event is not None:
            lines = [l for l in lines if "event=%s " % event in l or l.endswith("event=" + event)]
        return lines

    def wait_log(self, start, event, count=1, contains=None, timeout=SETTLE_S):
        """The log lines of event after offset start, once there are at
        least count of them holding contains (workers write their log lines
        a moment after the event)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [l for l in self.log_lines(start, event) if contains is None or contains in l]
            if len(lines) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertGreaterEqual(len(lines), count, "event=%s%s in the log: %r"
                                % (event, " with " + contains if contains else "", lines))
        return lines

    def greeted(self, port=None, host=h.LOOPBACK4):
        """A connection whose one-line 220 banner has been read."""
        c = self.srv.conn(host=host, port=port)
        h.assert_reply(self, c.banner, 220)
        self.assertEqual(len(c.banner.lines), 1, c.banner.text)
        return c

    def assert_refused(self, c, enhanced, what):
        """c gets exactly one reply, 421 <enhanced>, and is closed; nothing it
        sent is answered."""
        replies, closed = c.replies_until_close(limit=5)
        self.assertTrue(closed, "%s: connection not closed after %r" % (what, replies))
        self.assertEqual(len(replies), 1, "%s: replies %r" % (what, replies))
        h.assert_reply(self, replies[0], 421, enhanced, sent=c.sent)


# --------------------------------------------------------------------------
# per-client limits


class ConnectionsPerIpTest(FrontlineCase):

    def open_spread(self, n, attempts=6):
        """n greeted connections that landed on both workers (the log's
        connection_open lines say which); retried, bounded, when the kernel
        put every one on the same worker."""
        for _ in range(attempts):
            start = len(self.srv.stderr_text())
            conns = []
            deadline = time.monotonic() + SETTLE_S
            while len(conns) < n:
                c = self.srv.conn()
                if c.banner.code == 421 and time.monotonic() < deadline:
                    # an earlier round's close not yet seen by the server
                    c.close()
                    time.sleep(0.05)
                    continue
                h.assert_reply(self, c.banner, 220)
                conns.append(c)
            lines = self.wait_log(start, "connection_open", n)
            workers = {m.group(1) for m in (re.search(r"worker=(\d+)", l) for l in lines) if m}
            self.assertEqual(len(lines), n, "connection_open lines: %r" % lines)
            if workers == {"0", "1"}:
                return conns
            for c in conns:
                c.close()
            time.sleep(0.2)
        self.fail("%d connections never spread over both workers in %d attempts" % (n, attempts))

    def test_over_the_limit_421_at_connect_across_workers(self):
        self.start([("limits_exempt", "none"), ("max_connections_per_ip", "6")], workers=2)
        conns = self.open_spread(6)
        for c in conns:
            h.assert_reply(self, c.cmd("EHLO held.example"), 250)
        # the 7th talks at once; whichever worker takes it sees the other's
        # connections and refuses it without reading: its EHLO gets nothing
        start = len(self.srv.stderr_text())
        extra = connect_raw(self.srv.port)
        extra.send(b"EHLO early.example\r\n")
        self.assert_refused(extra, "4.7.0", "7th connection")
        extra.close()
        self.wait_log(start, "connection_refused", contains="reason=connections_per_ip")
        self.assertEqual(self.log_lines(start, "connection_open"), [])
        # closing one lets exactly one new one in
        conns.pop().close()
        deadline = time.monotonic() + SETTLE_S
        while True:
            c = self.srv.conn()
            if c.banner.code == 220:
                break
            c.close()
            self.assertLess(time.monotonic(), deadline, "no connection admitted after a close")
            time.sleep(0.05)
        h.assert_reply(self, c.cmd("EHLO again.example"), 250)
        conns.append(c)
        again = connect_raw(self.srv.port)
        self.assert_refused(again, "4.7.0", "connection over the limit after the swap")
        again.close()
        for c in conns:
            h.assert_reply(self, c.cmd("QUIT"), 221)
            c.close()
        self.finish()

    def test_loopback_exempt_by_default(self):
        # the default limits_exempt is 127.0.0.0/8 ::1: never refused
        port4 = h.free_port()
        listen = ["127.0.0.1:%d" % port4]
        hosts = [(h.LOOPBACK4, port4)]
        if h.ipv6_loopback_available():
            port6 = h.free_port(socket.AF_INET6)
            listen.append("[::1]:%d" % port6)
            hosts.append((h.LOOPBACK6, port6))
        self.start([("max_connections_per_ip", "2"), ("max_connection_rate_per_ip", "3")],
                   listen=listen)
        conns = []
        for host, port in hosts:
            for i in range(8):
                c = self.greeted(port=port, host=host)
                h.assert_reply(self, c.cmd("EHLO exempt%d.example" % i), 250)
                conns.append(c)
        for c in conns:
            c.close()
        self.assertEqual(self.log_lines(0, "connection_refused"), [])
        self.finish()

    def test_ipv6_client_counted(self):
        if not h.ipv6_loopback_available():
            self.skipTest("::1 cannot be bound here")
        port4 = h.free_port()
        port6 = h.free_port(socket.AF_INET6)
        self.start([("limits_exempt", "none"), ("max_connections_per_ip", "2"),
                    ("ipv6_prefix", "64")],
                   listen=["127.0.0.1:%d" % port4, "[::1]:%d" % port6])
        six = [self.greeted(port=port6, host=h.LOOPBACK6) for _ in range(2)]
        third = connect_raw(port6, host=h.LOOPBACK6)
        self.assert_refused(third, "4.7.0", "third connection from ::1")
        third.close()
        # 127.0.0.1 is another client with a count of its own
        four = [self.greeted(port=port4) for _ in range(2)]
        for c in six + four:
            h.assert_reply(self, c.cmd("QUIT"), 221)
            c.close()
        self.finish()


class ConnectionRateTest(FrontlineCase):

    def test_rate_past_the_limit_421(self):
        self.start([("limits_exempt", "none"), ("max_connection_rate_per_ip", "5")])
        for i in range(5):
            c = self.greeted()
            h.assert_reply(self, c.cmd("QUIT"), 221)
            c.close()
        start = len(self.srv.stderr_text())
        c = connect_raw(self.srv.port)
        c.send(b"EHLO sixth.example\r\n")
        self.assert_refused(c, "4.7.0", "6th connection within the minute")
        c.close()
        self.wait_log(start, "connection_refused", contains="reason=connection_rate_per_ip")
        self.finish()


class MessageRateTest(FrontlineCase):

    def test_mail_past_the_rate_451_and_session_goes_on(self):
        self.start([("limits_exempt", "none"), ("max_message_rate_per_ip", "3")])
        with smtplib.SMTP(h.LOOPBACK4, self.srv.port, timeout=15) as s:
            s.ehlo("rate.example")
            for i in range(3):
                refused = s.sendmail("a@client.example", ["user@" + h.DOMAIN],
                                     "Subject: r%d\r\n\r\nbody\r\n" % i)
                self.assertEqual(refused, {})
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                s.sendmail("a@client.example", ["user@" + h.DOMAIN], "Subject: r4\r\n\r\nx\r\n")
            self.assertEqual(cm.exception.smtp_code, 451)
            self.assertTrue(cm.exception.smtp_error.startswith(b"4.7.1"), cm.exception.smtp_error)
            # the session goes on: no transaction is open, NOOP answers
            self.assertEqual(s.noop()[0], 250)
            self.assertEqual(s.rcpt("user@" + h.DOMAIN)[0], 503)
        self.assertEqual(len(self.srv.ls()), 3)
        self.wait_log(0, "mail_refused", contains="reason=message_rate_per_ip")
        self.finish()


# --------------------------------------------------------------------------
# pre-greeting screening


class GreetPauseTest(FrontlineCase):

    def pause_settings(self, action):
        return [("greet_pause", "%ds" % PAUSE_S), ("greet_action", action)]

    def read_paused_banner(self, c):
        """Reads "220-" at once and "220 " after the pause."""
        t0 = time.monotonic()
        first = read_line(c, BANNER_FIRST_S)
        self.assertTrue(first.startswith(b"220-"), first)
        final = read_line(c, PAUSE_S + 5)
        waited = time.monotonic() - t0
        self.assertTrue(final.startswith(b"220 "), final)
        self.assertGreaterEqual(waited, PAUSE_MIN_S, "final greeting after %.2fs" % waited)

    def test_pause_then_final_greeting_and_pass_cached(self):
        swaks = h.require_program("swaks")
        self.start(self.pause_settings("ignore"), workers=2)
        c = connect_raw(self.srv.port)
        self.read_paused_banner(c)
        h.assert_reply(self, c.cmd("EHLO patient.example"), 250)
        h.assert_reply(self, c.cmd("QUIT"), 221)
        c.close()
        self.wait_metric("pass", 1)
        self.srv.stop_checked(self)
        # a real client waits for the final greeting and passes
        self.start(self.pause_settings("ignore"), workers=2)
        t0 = time.monotonic()
        cp = subprocess.run([swaks, "--server", h.LOOPBACK4, "--port", str(self.srv.port),
                             "--helo", "patient.example", "--from", "a@client.example",
                             "--to", "user@" + h.DOMAIN, "--timeout", "15"],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        took = time.monotonic() - t0
        out = cp.stdout.decode("latin-1")
        self.assertEqual(cp.returncode, 0, out[-3000:])
        self.assertIn("<-  220-", out)
        self.assertRegex(out, r"<-  250 2\.0\.0 Ok: queued as [0-9A-F]{16}")
        self.assertGreaterEqual(took, PAUSE_MIN_S)
        self.wait_metric("pass", 1)
        self.assertEqual(len(self.srv.ls()), 1)
        # a client that passed is greeted at once, whichever worker takes it
        # (connections until both workers have taken some, bounded)
        start = len(self.srv.stderr_text())
        workers = set()
        i = 0
        while workers != {"0", "1"}:
            self.assertLess(i, 24, "connections never landed on both workers")
            i += 1
            t0 = time.monotonic()
            c = connect_raw(self.srv.port)
            line = read_line(c, BANNER_FIRST_S)
            self.assertTrue(line.startswith(b"220 "), "connection %d after a pass: %r" % (i, line))
            self.assertLess(time.monotonic() - t0, BANNER_FIRST_S)
            h.assert_reply(self, c.cmd("EHLO again.example"), 250)
            h.assert_reply(self, c.cmd("QUIT"), 221)
            c.close()
            lines = self.wait_log(start, "connection_open", i)
            workers = {m.group(1) for m in (re.search(r"worker=(\d+)", l) for l in lines) if m}
        self.assertEqual(self.screen_count("pregreet"), 0)
        self.finish()

    def test_no_cache_pauses_every_time(self):
        # screen_cache_ttl = 0 remembers nothing: a pass does not spare the pause
        self.start(self.pause_settings("ignore") + [("screen_cache_ttl", "0")], workers=1)
        for _ in range(2):
            c = connect_raw(self.srv.port)
            self.read_paused_banner(c)
            h.assert_reply(self, c.cmd("QUIT"), 221)
            c.close()
        self.wait_metric("pass", 2)
        self.finish()

    def test_drop_pregreeter_521_and_close(self):
        self.start(self.pause_settings("drop"))
        c = connect_raw(self.srv.port)
        first = read_line(c, BANNER_FIRST_S)
        self.assertTrue(first.startswith(b"220-"), first)
        c.send(b"EHLO early.example\r\n")
        replies, closed = c.replies_until_close(limit=5)
        self.assertTrue(closed, "pre-greeter not closed: %r" % replies)
        self.assertEqual([r.code for r in replies], [521], replies)
        self.assertEqual(replies[0].enhanced, "5.5.1", replies)
        c.close()
        self.wait_metric("pregreet", 1)
        self.wait_log(0, "screen_failed", contains="pregreet=yes")
        self.assertEqual(self.screen_count("pass"), 0)
        self.finish()

    def test_enforce_pregreeter_550_to_every_rcpt(self):
        self.start(self.pause_settings("enforce"))
        c = connect_raw(self.srv.port)
        first = read_line(c, BANNER_FIRST_S)
        self.assertTrue(first.startswith(b"220-"), first)
        c.send(b"EHLO early.example\r\n")
        final = read_line(c, PAUSE_S + 5)
        self.assertTrue(final.startswith(b"220 "), final)
        # the early EHLO is answered after the final greeting
        h.assert_reply(self, c.reply(), 250, sent=c.sent)
        h.assert_reply(self, c.cmd("MAIL FROM:<a@client.example>"), 250, "2.1.0")
        for rcpt in ("user@" + h.DOMAIN, "other@" + h.DOMAIN):
            h.assert_reply(self, c.cmd("RCPT TO:<%s>" % rcpt), 550, "5.5.1", sent=c.sent)
        h.assert_reply(self, c.cmd("DATA"), 503, sent=c.sent)
        h.assert_reply(self, c.cmd("QUIT"), 221)
        c.close()
        self.wait_metric("pregreet", 1)
        # the failed verdict is no pass: the next connection is paused again
        c = connect_raw(self.srv.port)
        self.read_paused_banner(c)
        c.close()
        self.assertEqual(len(self.srv.ls()), 0)
        self.finish()

    def test_ignore_pregreeter_served(self):
        self.start(self.pause_settings("ignore"))
        c = connect_raw(self.srv.port)
        c.send(b"EHLO early.example\r\n")
        self.read_paused_banner(c)
        h.assert_reply(self, c.reply(), 250, sent=c.sent)
        h.send_message(self, c, b"Subject: early\r\n\r\nserved anyway\r\n")
        h.assert_reply(self, c.cmd("QUIT"), 221)
        c.close()
        self.wait_metric("pregreet", 1)
        self.assertEqual(len(self.srv.ls()), 1)
        self.finish()

    def test_http_request_first_521_and_close(self):
        self.start([])
        requests = (b"GET / HTTP/1.1\r\nHost: mx.e2e.test\r\n\r\n",
                    b"POST /form HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                    b"CONNECT mx.e2e.test:443 HTTP/1.1\r\n\r\n")
        for req in requests:
            c = self.greeted()
            c.send(req)
            replies, closed = c.replies_until_close(limit=5)
            self.assertTrue(closed, "HTTP client not closed: %r" % replies)
            self.assertEqual([r.code for r in replies], [521], (req, replies))
            self.assertEqual(replies[0].enhanced, "5.5.1", replies)
            c.close()
        self.wait_metric("http", len(requests))
        # a GET later in a session is an ordinary unknown command
        c = self.greeted()
        h.assert_reply(self, c.cmd("EHLO web.example"), 250)
        h.assert_reply(self, c.cmd("GET / HTTP/1.1"), 500, "5.5.2")
        h.assert_reply(self, c.cmd("QUIT"), 221)
        c.close()
        self.finish()


    def test_bare_lf_first_line_550_and_close(self):
        # bare_newline = reject (the default): a first line ended by a lone
        # LF is postscreen's bare-newline test; counted as its own verdict
        self.start([])
        c = self.greeted()
        c.send(b"EHLO lf.example\n")
        replies, closed = c.replies_until_close(limit=5)
        self.assertTrue(closed, "bare-LF client not closed: %r" % replies)
        self.assertEqual([r.code for r in replies], [550], replies)
        self.assertEqual(replies[0].enhanced, "5.5.2", replies)
        c.close()
        self.wait_metric("bare_lf", 1)
        self.wait_log(0, "screen_failed", contains="bare_lf=yes")
        self.finish()


# --------------------------------------------------------------------------
# the error budget


class ErrorBudgetTest(FrontlineCase):

    def timed(self, c, line):
        t0 = time.monotonic()
        r = c.cmd(line)
        return r, time.monotonic() - t0

    def test_soft_limit_delays_hard_limit_closes(self):
        self.start([("soft_error_limit", "2"), ("hard_error_limit", "5"),
                    ("error_sleep_time", "%ds" % PAUSE_S)], workers=1)
        c = self.greeted()
        h.assert_reply(self, c.cmd("EHLO errors.example"), 250)
        for i in (1, 2):
            r, took = self.timed(c, "XYZZY %d" % i)
            h.assert_reply(self, r, 500, "5.5.2")
            self.assertLess(took, BANNER_FIRST_S, "error %d (within the soft limit)" % i)
        for i in (3, 4):
            r, took = self.timed(c, "XYZZY %d" % i)
            h.assert_reply(self, r, 500, "5.5.2")
            self.assertGreaterEqual(took, PAUSE_MIN_S, "error %d past the soft limit" % i)
            self.assertLess(took, PAUSE_S + 3)
        # the 5th error: its reply, then 421 4.7.0 and close
        c.send(b"XYZZY 5\r\n")
        replies, closed = c.replies_until_close(limit=5)
        self.assertTrue(closed, replies)
        self.assertEqual([r.code for r in replies], [500, 421], replies)
        self.assertEqual(replies[1].enhanced, "4.7.0", replies)
        c.close()
        self.finish()

    def test_held_reply_is_a_timer_not_a_blocked_worker(self):
        self.start([("soft_error_limit", "1"), ("hard_error_limit", "10"),
                    ("error_sleep_time", "%ds" % PAUSE_S)], workers=1)
        a = self.greeted()
        h.assert_reply(self, a.cmd("EHLO held.example"), 250)  # ESMTP: pipelining
        h.assert_reply(self, a.cmd("XYZZY 1"), 500)
        t0 = time.monotonic()
        a.send(b"XYZZY 2\r\nNOOP\r\n")  # the reply to the 2nd error is held
        time.sleep(0.1)
        b = connect_raw(self.srv.port)
        b_banner = b.reply()
        t1 = time.monotonic()
        b_ehlo = b.cmd("EHLO other.example")
        b_took = time.monotonic() - t1
        h.assert_reply(self, b_banner, 220)
        h.assert_reply(self, b_ehlo, 250)
        self.assertLess(b_took, SERVED_AT_ONCE_S, "EHLO of another client while a reply is held")
        self.assertLess(time.monotonic() - t0, PAUSE_MIN_S,
                        "the other client was served only after the held reply")
        r = a.reply()
        held = time.monotonic() - t0
        h.assert_reply(self, r, 500)
        self.assertGreaterEqual(held, PAUSE_MIN_S)
        # the NOOP behind the held reply was not read before it went out
        h.assert_reply(self, a.reply(), 250)
        for c in (a, b):
            h.assert_reply(self, c.cmd("QUIT"), 221)
            c.close()
        self.finish()

    def test_noop_flood_past_junk_limit_ends_with_421(self):
        self.start([("junk_command_limit", "5"), ("soft_error_limit", "3"),
                    ("hard_error_limit", "3")], workers=1)
        c = self.greeted()
        h.assert_reply(self, c.cmd("EHLO noop.example"), 250)
        # NOOP ends a pipelined group (RFC 2920): one at a time. Five are
        # free, the 6th, 7th and 8th count as errors; the 8th (the 3rd
        # error) gets its 250 and then 421 4.7.0.
        codes = []
        for _ in range(20):
            c.send(b"NOOP\r\n")
            r = c.reply()
            codes.append(r.code)
            if len(codes) == 8:
                break
            if r.code != 250:
                break
        if codes == [250] * 8:
            last = c.reply()
            codes.append(last.code)
            h.assert_reply(self, last, 421, "4.7.0")
        self.assertEqual(codes, [250] * 8 + [421], codes)
        self.assertTrue(c.is_closed(SETTLE_S), "not closed after 421")
        c.close()
        self.finish()


# --------------------------------------------------------------------------
# output back-pressure


def server_rx_queue(server_port, client_port):
    """Bytes the server has not read from the connection (its socket's
    receive queue, /proc/net/tcp), or None if the socket is not listed."""
    local = "0100007F:%04X" % server_port
    remote = "0100007F:%04X" % client_port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[4].split(":")[1], 16)
    return None


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class SmallWindowConn(h.SmtpConn):
    """A client connection with a small receive buffer and a small MSS, set
    before connecting, so the server's replies fill what the kernel holds
    for them (its send buffer is sized from our MSS) in a few hundred KiB."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.buf = b""
        self.sent = b""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
            self.sock.settimeout(h.SOCKET_TIMEOUT_S)
            self.sock.connect((h.LOOPBACK4, port))
            self.banner = self.reply()
        except BaseException:
            self.sock.close()
            raise


class BackPressureTest(FrontlineCase):

    SEND_MAX_BYTES = 48 << 20  # the flood's bound: far beyond every buffer in the way
    FLOOD_MAX_S = 30.0         # and its bound in time
    STALL_S = 2.0              # nothing taken this long: the server stopped reading
    RSS_GROWTH_MAX_KIB = 32 * 1024

    def test_client_that_does_not_read_stops_being_read(self):
        # no limit of the session ends the flood: RSET is junk past 100
        self.start([("junk_command_limit", "10000")], workers=1)
        c = SmallWindowConn(self.srv.port)
        h.assert_reply(self, c.banner, 220)
        h.assert_reply(self, c.cmd("EHLO flood.example"), 250)
        client_port = c.sock.getsockname()[1]
        rss_before = rss_kib(self.srv.proc.pid)
        # pipelined transactions (RFC 2920): MAIL, 1000 RCPT, RSET, each
        # answered 250; the replies are never read
        txn = (b"MAIL FROM:<f@client.example>\r\n"
               + b"RCPT TO:<user@example.com>\r\n" * 1000 + b"RSET\r\n")
        commands_per_txn = 1002
        c.sock.setblocking(False)
        sent = 0
        pos = 0
        t0 = time.monotonic()
        last_progress = t0
        stalled = False
        while sent < self.SEND_MAX_BYTES and time.monotonic() - t0 < self.FLOOD_MAX_S:
            _, writable, _ = select.select([], [c.sock], [], 0.2)
            if writable:
                try:
                    n = c.sock.send(txn[pos:])
                except BlockingIOError:
                    n = 0
                except OSError as e:
                    self.fail("the server closed a client that reads no reply after %d bytes "
                              "(%s); log:\n%s" % (sent, e, self.srv.stderr_text()[-2000:]))
                if n > 0:
                    sent += n
                    pos = (pos + n) % len(txn)
                    last_progress = time.monotonic()
                    continue
            if time.monotonic() - last_progress >= self.STALL_S:
                stalled = True
                break
        self.assertTrue(stalled, "the server went on taking input from a client that reads "
                        "no reply: %d bytes in %.1fs" % (sent, time.monotonic() - t0))
        # the server holds unread input and takes no more of it
        q1 = server_rx_queue(self.srv.port, client_port)
        time.sleep(1.5)
        q2 = server_rx_queue(self.srv.port, client_port)
        self.assertIsNotNone(q1, "server socket not found in /proc/net/tcp")
        self.assertGreater(q1, 0, "server's receive queue empty: it kept reading")
        self.assertEqual(q1, q2, "the server went on reading from a client that reads nothing")
        grown_kib = rss_kib(self.srv.proc.pid) - rss_before
        self.assertLess(grown_kib, self.RSS_GROWTH_MAX_KIB,
                        "server grew %d KiB during a flood of %d bytes" % (grown_kib, sent))
        # meanwhile the worker serves others
        other = self.greeted()
        h.assert_reply(self, other.cmd("EHLO other.example"), 250)
        h.assert_reply(self, other.cmd("QUIT"), 221)
        other.close()
        # once the client reads, every command it sent is answered, in order
        whole_txns, partial = divmod(sent, len(txn))
        rest = txn[partial:]
        expect = whole_txns * commands_per_txn + txn[:partial].count(b"\r\n")
        c.sock.setblocking(True)
        c.sock.settimeout(60)
        # finish the partial line (a whole command) and say QUIT
        tail = b""
        if partial and not txn[:partial].endswith(b"\r\n"):
            tail = rest[:rest.index(b"\n") + 1]
            expect += 1
        tail += b"QUIT\r\n"
        buf = b""
        replies = 0
        sent_tail = False
        deadline = time.monotonic() + 120
        while True:
            self.assertLess(time.monotonic(), deadline, "replies not drained")
            want_w = [c.sock] if not sent_tail else []
            r, w, _ = select.select([c.sock], want_w, [], 10)
            if w:
                c.sock.sendall(tail)
                sent_tail = True
            if r:
                chunk = c.sock.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
                lines = buf.split(b"\r\n")
                buf = lines.pop()
                for line in lines:
                    if line[3:4] == b"-":
                        continue
                    replies += 1
                    if line.startswith(b"221 "):
                        break
                    self.assertTrue(line.startswith(b"250 "), "reply %d: %r" % (replies, line))
                else:
                    continue
                break
        self.assertEqual(replies, expect + 1, "replies to %d commands and QUIT" % expect)
        c.close()
        self.finish()


if __name__ == "__main__":
    unittest.main()
