#!/usr/bin/env python3
"""Bounds: max_message_size (552 5.3.4 after reading to the end), the
Received: hop count (554 5.4.6 past 100), max_recipients (452 4.5.3; past
1000 of those in a session each counts as an error, 421 4.7.0 at the 20th),
max_command_line (500 5.5.2, the session survives), idle/command/data
timeouts (421 4.4.2 and close), max_connections (421 4.3.2, others keep
being served) and store_max_bytes (452 4.3.1 once the store is full;
everything acknowledged stays stored).
"""

import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402


class SizeAndLinesTest(h.ServerTestCase, unittest.TestCase):
    settings = [("max_message_size", "20000"), ("max_command_line", "512")]

    def test_message_over_size_read_to_end(self):
        before = len(self.server.ls())
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<s@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")
            self.expect(c, "DATA", 354)
            body = b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 1000
            # a command-looking line after the limit is still body
            body += b"QUIT\r\n" + (b"y" * 98 + b"\r\n") * 100
            payload = h.dot_stuff(body)
            c.send(payload)
            h.assert_reply(self, c.reply(), 552, "5.3.4", sent=payload)
            self.expect(c, "NOOP", 250, "2.0.0")
            # the next transaction on the same connection works
            h.send_message(self, c, b"Subject: small\r\n\r\nsmall\r\n")
        self.assertEqual(len(self.server.ls()), before + 1)

    def test_message_at_size_limit(self):
        # the limit counts the message as sent (without our Received: header);
        # well under it must pass
        with self.ehlo() as c:
            body = b"Subject: fits\r\n\r\n" + (b"z" * 98 + b"\r\n") * 150
            qid = h.send_message(self, c, body)
        _, rest = h.split_received(self.server.show_body(qid))
        self.assertEqual(rest, body)

    def received_headers(self, n):
        return b"".join(b"Received: from hop%d.example by hop%d.example; "
                        b"Sat, 1 Jan 2022 00:00:00 +0000\r\n" % (i, i + 1) for i in range(n))

    def test_hop_count_over_100(self):
        before = len(self.server.ls())
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<s@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")
            self.expect(c, "DATA", 354)
            payload = h.dot_stuff(self.received_headers(101) + b"Subject: loop\r\n\r\nloop\r\n")
            c.send(payload)
            h.assert_reply(self, c.reply(), 554, "5.4.6", sent=payload)
            self.expect(c, "NOOP", 250, "2.0.0")
        self.assertEqual(len(self.server.ls()), before)

    def test_hop_count_100_accepted(self):
        with self.ehlo() as c:
            body = self.received_headers(100) + b"Subject: far\r\n\r\nfar\r\n"
            qid = h.send_message(self, c, body)
        _, rest = h.split_received(self.server.show_body(qid))
        self.assertEqual(rest, body)

    def test_received_in_body_not_counted(self):
        # only header lines count; the same text after the blank line is body
        with self.ehlo() as c:
            body = b"Subject: quoted\r\n\r\n" + self.received_headers(150)
            h.send_message(self, c, body)

    def test_command_line_limit(self):
        with self.ehlo() as c:
            # 512 octets including CRLF is legal (RFC 5321 4.5.3.1.4)
            line = b"NOOP " + b"a" * (512 - 5 - 2)
            self.assertEqual(len(line) + 2, 512)
            self.expect(c, line, 250, "2.0.0")
            self.expect(c, line + b"a", 500, "5.5.2")
            self.expect(c, "NOOP", 250, "2.0.0")
            self.expect(c, b"RCPT TO:<" + b"r" * 3000 + b"@example.com>", 500, "5.5.2")
            self.expect(c, "NOOP", 250, "2.0.0")
            # a long line split across many writes
            c.send(b"NOOP ")
            for _ in range(20):
                c.send(b"b" * 1000)
                time.sleep(0.01)
            c.send(b"\r\n")
            h.assert_reply(self, c.reply(), 500, "5.5.2", sent=b"NOOP bbbb...(20005 bytes)")
            h.send_message(self, c, b"Subject: survived\r\n\r\nok\r\n")


# Past max_recipients every RCPT gets 452 4.5.3; after this many of them in a
# session (SMTP_RECIPIENT_OVERSHOOT_MAX) each further one counts as an error,
# and SMTP_BAD_COMMANDS_MAX errors end the session.
RECIPIENT_OVERSHOOT_MAX = 1000
BAD_COMMANDS_MAX = 20


class RecipientOvershootTest(h.ServerTestCase, unittest.TestCase):
    settings = [("max_recipients", "2")]

    def begin(self, c):
        self.expect(c, "MAIL FROM:<s@client.example>", 250, "2.1.0")
        self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")
        self.expect(c, "RCPT TO:<other@example.com>", 250, "2.1.5")

    def test_pipelined_overshoot_keeps_the_transaction(self):
        # a client that pipelines a batch past the limit gets 452s and still
        # sends its message to the recipients that were accepted
        with self.ehlo() as c:
            self.begin(c)
            burst = b"".join(b"RCPT TO:<x%d@example.com>\r\n" % i for i in range(50))
            c.send(burst)
            for _ in range(50):
                h.assert_reply(self, c.reply(), 452, "4.5.3", sent=burst)
            self.expect(c, "DATA", 354)
            payload = b"Subject: two of many\r\n\r\nx\r\n.\r\n"
            c.send(payload)
            qid = h.queued_id(self, c.reply(), payload)
            self.expect(c, "QUIT", 221)
        entry = [m for m in self.server.ls() if m["id"] == qid][0]
        self.assertEqual(entry["to"], "<user@example.com>,<other@example.com>")

    def test_endless_overshoot_ends_the_session(self):
        # one error made first; then past the allowance, 452 number
        # RECIPIENT_OVERSHOOT_MAX + 19 is the 20th error: 421 and close
        before = len(self.server.ls())
        extra = RECIPIENT_OVERSHOOT_MAX + BAD_COMMANDS_MAX - 1
        with self.ehlo() as c:
            self.expect(c, "WHAT", 500, "5.5.2")
            self.begin(c)
            burst = b"RCPT TO:<x@example.com>\r\n" * (extra + 100)
            start = time.monotonic()
            c.send(burst)
            for i in range(extra):
                r = c.reply()
                h.assert_reply(self, r, 452, "4.5.3", sent=b"RCPT number %d" % (i + 1))
            r = c.reply()
            h.assert_reply(self, r, 421, "4.7.0", sent=b"RCPT number %d" % (extra + 1))
            self.assertTrue(c.is_closed(wait_s=5.0), "the session goes on after 421")
            self.assertLess(time.monotonic() - start, 10.0)
        self.assertEqual(len(self.server.ls()), before)


class TimeoutsTest(unittest.TestCase):
    """Each timeout on its own server; 421 4.4.2 '... timeout exceeded', then close."""

    def start(self, settings):
        srv = h.Server(settings=settings)
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop_checked, self)
        return srv

    def expect_timeout(self, c, low_s, high_s, what):
        t0 = time.monotonic()
        c.settimeout(high_s + 5)
        replies, closed = c.replies_until_close()
        elapsed = time.monotonic() - t0
        texts = [r.text for r in replies]
        self.assertTrue(replies, "%s: closed without a reply after %.1fs" % (what, elapsed))
        r = replies[-1]
        self.assertEqual((r.code, r.enhanced), (421, "4.4.2"), "%s: %r" % (what, texts))
        self.assertIn("timeout exceeded", r.text.lower(), "%s: %r" % (what, texts))
        self.assertTrue(closed, "%s: connection open after 421" % what)
        self.assertGreaterEqual(elapsed, low_s, "%s: 421 after %.2fs" % (what, elapsed))
        self.assertLessEqual(elapsed, high_s, "%s: 421 after %.2fs" % (what, elapsed))

    def test_idle_and_command_timeout(self):
        srv = self.start([("idle_timeout", "1s"), ("command_timeout", "1s"),
                          ("data_timeout", "60s")])
        with srv.conn() as c:
            self.expect_timeout(c, 0.5, 6, "after the banner")
        with srv.conn() as c:
            h.assert_reply(self, c.cmd("EHLO x.example"), 250)
            self.expect_timeout(c, 0.5, 6, "after EHLO")
        with srv.conn() as c:
            h.assert_reply(self, c.cmd("EHLO x.example"), 250)
            h.assert_reply(self, c.cmd("MAIL FROM:<a@client.example>"), 250, "2.1.0")
            self.expect_timeout(c, 0.5, 6, "in a transaction")
        with srv.conn() as c:
            c.send(b"EHLO partial-line-without-end")
            self.expect_timeout(c, 0.5, 6, "inside a partial command line")

    def test_activity_resets_the_timer(self):
        srv = self.start([("idle_timeout", "2s"), ("command_timeout", "2s")])
        with srv.conn() as c:
            h.assert_reply(self, c.cmd("EHLO x.example"), 250)
            for _ in range(4):
                time.sleep(1.0)
                h.assert_reply(self, c.cmd("NOOP"), 250, "2.0.0")

    def test_data_timeout_steady_sender(self):
        # RFC 5321 4.5.3.2.6: the data block timeout runs between reads, so a
        # slow but steady sender is not cut off, as long as it keeps the
        # minimum rate (each byte moves the deadline by 1/min_data_rate s;
        # below it a trickle is cut: test_resource_attacks). Here 12 bytes/s
        # against a minimum of 10.
        srv = self.start([("data_timeout", "2s"), ("min_data_rate", "10")])
        with srv.conn() as c:
            h.assert_reply(self, c.cmd("EHLO x.example"), 250)
            h.assert_reply(self, c.cmd("MAIL FROM:<a@client.example>"), 250, "2.1.0")
            h.assert_reply(self, c.cmd("RCPT TO:<user@example.com>"), 250, "2.1.5")
            h.assert_reply(self, c.cmd("DATA"), 354)
            c.send(b"Subject: slow\r\n\r\n")
            for _ in range(8):  # 4 s in all, never 2 s quiet
                time.sleep(0.5)
                c.send(b"tick\r\n")
            c.send(b".\r\n")
            h.queued_id(self, c.reply(), b"(one line every 0.5 s for 4 s)")

    def test_data_timeout(self):
        srv = self.start([("idle_timeout", "60s"), ("command_timeout", "60s"),
                          ("data_timeout", "1s")])
        with srv.conn() as c:
            h.assert_reply(self, c.cmd("EHLO x.example"), 250)
            h.assert_reply(self, c.cmd("MAIL FROM:<a@client.example>"), 250, "2.1.0")
            h.assert_reply(self, c.cmd("RCPT TO:<user@example.com>"), 250, "2.1.5")
            h.assert_reply(self, c.cmd("DATA"), 354)
            c.send(b"Subject: slow\r\n\r\npartial body")
            self.expect_timeout(c, 0.5, 6, "in DATA")
        self.assertEqual(srv.ls(), [], "a timed-out message was stored")


class ConnectionLimitTest(unittest.TestCase):

    def run_limit(self, workers, limit):
        srv = h.Server(settings=[("max_connections", str(limit))], workers=workers)
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop_checked, self)
        time.sleep(0.5)  # let the readiness probe's connection be closed server-side
        held = []
        self.addCleanup(lambda: [c.close() for c in held])
        for i in range(limit):
            c = srv.conn()
            held.append(c)
            h.assert_reply(self, c.banner, 220, sent=b"(connection %d of %d)" % (i + 1, limit))
        extra = h.SmtpConn(srv.port, read_banner=False)
        try:
            r = extra.reply()
            self.assertEqual((r.code, r.enhanced), (421, "4.3.2"),
                             "connection %d with max_connections %d: %r"
                             % (limit + 1, limit, r.text))
            self.assertTrue(extra.is_closed(), "connection open after 421 4.3.2")
        except h.Closed:
            self.fail("connection %d closed without 421 4.3.2" % (limit + 1))
        finally:
            extra.close()
        # the held connections still work
        for c in held:
            h.assert_reply(self, c.cmd("NOOP"), 250, "2.0.0")
        h.send_message(self, held[0], b"Subject: held\r\n\r\nstill served\r\n",
                       helo="x.example")
        # one leaves, a newcomer is served (bounded retry: the close is async)
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:
            c = h.SmtpConn(srv.port, read_banner=False)
            try:
                r = c.reply()
            except h.Closed:
                r = None
            if r is not None and r.code == 220:
                held.append(c)
                break
            c.close()
            self.assertLess(time.monotonic(), deadline,
                            "no slot freed 10s after a connection closed (last %r)"
                            % (r.text if r else None))
            time.sleep(0.2)
        h.assert_reply(self, held[-1].cmd("NOOP"), 250, "2.0.0")

    def test_slots_freed_after_server_side_close(self):
        # The server ends these sessions itself (554 5.5.0, 421 4.4.2) while
        # the clients keep their end open for a few seconds before closing.
        # Every slot must come back: a leak would lock out all clients.
        limit = 2
        srv = h.Server(settings=[("max_connections", str(limit)), ("idle_timeout", "1s"),
                                 ("command_timeout", "1s")], workers=1)
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop_checked, self)
        time.sleep(0.5)
        held = []
        self.addCleanup(lambda: [c.close() for c in held])
        c = srv.conn()
        held.append(c)
        c.send(b"EHLO x.example\r\nNOOP\r\n")  # pipelining violation
        replies, closed = c.replies_until_close()
        self.assertTrue(closed and replies and replies[-1].code == 554,
                        [r.text for r in replies])
        c = srv.conn()
        held.append(c)
        replies, closed = c.replies_until_close()  # idle timeout
        self.assertTrue(closed and replies and replies[-1].code == 421,
                        [r.text for r in replies])
        time.sleep(4)
        for c in held:
            c.close()
        held.clear()
        deadline = time.monotonic() + 10
        while len(held) < limit:
            c = h.SmtpConn(srv.port, read_banner=False, timeout=5)
            try:
                r = c.reply()
            except h.Closed:
                r = None
            if r is not None and r.code == 220:
                held.append(c)
                continue
            c.close()
            self.assertLess(time.monotonic(), deadline,
                            "%d of %d slots usable 10s after every client closed; the "
                            "server-closed sessions' slots leaked (last reply %r)"
                            % (len(held), limit, r.text if r else None))
            time.sleep(0.2)

    def test_one_worker(self):
        self.run_limit(1, 5)

    def test_two_workers_limit_is_global(self):
        self.run_limit(2, 6)


class FileDescriptorLimitTest(unittest.TestCase):

    def test_fd_exhaustion_recovers(self):
        # The process runs out of descriptors (RLIMIT_NOFILE 128) before it
        # reaches max_connections. Excess clients may wait or be refused,
        # but the gateway must not spin or flood its log, and once the
        # clients leave it must accept again.
        mport = h.free_port()
        srv = h.Server(settings=[("metrics_listen", "127.0.0.1:%d" % mport)], rlimit_nofile=128,
                       workers=2)
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop_checked, self)
        held = []
        self.addCleanup(lambda: [s.close() for s in held])
        greeted = 0
        t0 = time.monotonic()
        for _ in range(200):
            if time.monotonic() - t0 > 30:
                break
            try:
                s = socket.create_connection((h.LOOPBACK4, srv.port), timeout=0.5)
            except OSError:
                continue
            held.append(s)
            try:
                if s.recv(64).startswith(b"220 "):
                    greeted += 1
            except OSError:
                pass
        self.assertTrue(srv.running(), srv.stderr_text()[-2000:])
        self.assertGreater(greeted, 0)
        time.sleep(1.0)
        log_bytes = len(srv.stderr_bytes())
        for s in held:
            s.close()
        held.clear()
        deadline = time.monotonic() + 15
        last = None
        while True:
            try:
                with srv.conn(timeout=3) as c:
                    if c.banner.code == 220:
                        break
                    last = c.banner.text
            except (OSError, h.Closed) as e:
                last = repr(e)
            self.assertLess(time.monotonic(), deadline,
                            "no greeting 15s after the descriptor storm ended (last: %s); "
                            "%d greeted during it; stderr tail:\n%s"
                            % (last, greeted, srv.stderr_text()[-800:]))
            time.sleep(0.5)
        self.assertLess(log_bytes, 1 << 20, "%d bytes of log during a 200-connection descriptor "
                        "storm (a busy accept loop?); tail:\n%s"
                        % (log_bytes, srv.stderr_text()[-600:]))
        # the failures are counted and named, not only logged as numbers
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10) as r:
            text = r.read().decode()
        m = re.search(r"^ringmx_accept_errors_total (\d+)$", text, re.M)
        self.assertIsNotNone(m, "no ringmx_accept_errors_total")
        self.assertGreater(int(m.group(1)), 0)
        self.assertIn("event=accept_failed", srv.stderr_text())
        self.assertIn("error=EMFILE", srv.stderr_text())


class StoreFullTest(unittest.TestCase):

    def test_store_max_bytes(self):
        srv = h.Server(settings=[("segment_size", "1M"), ("store_max_bytes", "3M"),
                                 ("max_message_size", "512k")], workers=1)
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop_checked, self)
        acked = []
        refusal = None
        body_line = b"s" * 998 + b"\r\n"
        with srv.conn() as c:
            h.assert_reply(self, c.cmd("EHLO x.example"), 250)
            for i in range(40):  # 40 x 100 KB: far past 3 MB
                r = c.cmd("MAIL FROM:<s@client.example>")
                if r.code != 250:
                    refusal = r
                    break
                h.assert_reply(self, c.cmd("RCPT TO:<user@example.com>"), 250, "2.1.5")
                h.assert_reply(self, c.cmd("DATA"), 354)
                token = h.unique_token("full%d" % i).encode()
                c.send(h.dot_stuff(b"Subject: " + token + b"\r\n\r\n" + body_line * 100))
                r = c.reply()
                if r.code != 250:
                    refusal = r
                    break
                acked.append((h.queued_id(self, r), token))
        self.assertIsNotNone(refusal, "40 messages of 100 KB accepted with store_max_bytes 3M")
        self.assertEqual((refusal.code, refusal.enhanced), (452, "4.3.1"),
                         "store full: %r" % refusal.text)
        ids = set(srv.ls_ids())
        for qid, token in acked:
            self.assertIn(qid, ids)
            self.assertIn(token, srv.show_body(qid))


if __name__ == "__main__":
    unittest.main()
