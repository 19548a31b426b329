#!/usr/bin/env python3
"""A relay that breaks the protocol must not crash the gateway.

The relay here is scripted (no real program misbehaves this way): it does
not offer PIPELINING, yet answers MAIL with a burst of 300 "250" replies in
one write, ahead of the RCPTs they would answer. A message with 200
recipients (Python smtplib as the client) meets it. The gateway must stay
up, log the failure (event=upstream_failed, event=delivery result=deferred
with 451 4.5.0), keep the message queued (ringmx-store ls --deferred), go
on retrying it without harm, and deliver it to every recipient once a sane
relay (Postfix smtp-sink, on the same port) takes over.
"""

import os
import re
import smtplib
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

SENDER = "sender@client.example"
RCPT_COUNT = 200
BURST_REPLIES = 300
RELAY_IDLE_S = 10.0        # a relay connection without input ends after this
RELAY_LINE_MAX_BYTES = 4096
WAIT_S = 45.0

# QUEUE_ID AGE NEXT ATTEMPTS LAST_REPLY PENDING/TOTAL
DEFERRED_RE = re.compile(r"^(?P<id>[0-9A-F]{16}) \S+ (?:now|in \S+) (?P<attempts>\d+) "
                         r"(?P<reply>-|\d{3}(?: \d\.\d+\.\d+)?) (?P<pending>\d+)/(?P<total>\d+)$")


class AheadRelay(up.ScriptedRelay):
    """Greets, answers EHLO without PIPELINING, and answers MAIL with
    BURST_REPLIES lines of 250 in one write, then only reads until the peer
    closes. Counts the bursts it sent."""

    JOIN_TIMEOUT_S = RELAY_IDLE_S + 5

    def __init__(self):
        super().__init__()
        self.bursts = 0

    def burst_count(self):
        with self.lock:
            return self.bursts

    def _lines(self, conn):
        """Yields command lines until EOF, idleness or stop."""
        buf = b""
        idle_since = time.monotonic()
        while not self.stopping.is_set():
            if time.monotonic() - idle_since > RELAY_IDLE_S:
                return
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            idle_since = time.monotonic()
            buf += data
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                yield line
            if len(buf) > RELAY_LINE_MAX_BYTES:
                return

    def session(self, conn):
        try:
            conn.sendall(b"220 ahead.e2e.test ESMTP\r\n")
            burst_sent = False
            for line in self._lines(conn):
                if burst_sent:
                    continue  # the RCPTs written against the burst: no more replies
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-ahead.e2e.test\r\n250 8BITMIME\r\n")
                elif verb == b"MAIL":
                    conn.sendall(b"250 2.1.5 ok\r\n" * BURST_REPLIES)
                    burst_sent = True
                    with self.lock:
                        self.bursts += 1
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            pass
        finally:
            conn.close()


class ForwardHostile(unittest.TestCase):

    def setUp(self):
        up.require_root()  # smtp-sink runs as nobody

    def send(self, srv, rcpts, body):
        """smtplib: one message to rcpts; returns its queue id."""
        with smtplib.SMTP(h.LOOPBACK4, srv.port, timeout=h.SOCKET_TIMEOUT_S) as s:
            s.ehlo("hostile.client.example")
            code, resp = s.mail(SENDER)
            self.assertEqual(code, 250, resp)
            for r in rcpts:
                code, resp = s.rcpt(r)
                self.assertEqual(code, 250, "RCPT %s: %s" % (r, resp))
            code, resp = s.data(body)
            self.assertEqual(code, 250, resp)
            m = re.search(rb"queued as ([0-9A-Fa-f]{16})", resp)
            self.assertIsNotNone(m, resp)
            return m.group(1).decode().upper()

    def deferred_line(self, srv, qid):
        cp = srv.store("ls", "--deferred", check=True)
        for line in cp.stdout.decode("utf-8", "replace").splitlines()[1:]:
            m = DEFERRED_RE.match(line)
            self.assertIsNotNone(m, "ls --deferred line %r" % line)
            if m.group("id") == qid:
                return m
        return None

    def test_relay_answering_ahead(self):
        relay = AheadRelay().start()
        self.addCleanup(relay.stop)
        srv = h.Server(settings=up.forward_settings([relay.port], retry_min="1s",
                                                    retry_max="2s"))
        self.addCleanup(srv.cleanup)
        srv.start()
        rcpts = ["r%03d@%s" % (i, h.DOMAIN) for i in range(RCPT_COUNT)]
        token = h.unique_token("ahead")
        qid = self.send(srv, rcpts, "Subject: %s\r\n\r\n%d recipients\r\n"
                        % (token, RCPT_COUNT))

        # two attempts meet the burst: the first must not crash the gateway,
        # and the message, still queued, must not crash it on its retry
        def two_bursts_or_exit():
            return relay.burst_count() >= 2 or not srv.running()

        up.wait_for(two_bursts_or_exit, WAIT_S, 0.1)
        self.assertTrue(srv.running(), "ringmx exited (status %r) after a relay answered "
                        "ahead; stderr:\n%s" % (srv.proc.poll(), srv.stderr_text()[-3000:]))
        self.assertGreaterEqual(relay.burst_count(), 2, srv.stderr_text()[-3000:])
        with srv.conn() as c:  # still serving
            h.assert_reply(self, c.cmd("EHLO still.up.example"), 250, sent=c.sent)

        def failures():
            return [e for e in up.log_events(srv, "upstream_failed")
                    if e.get("reply", "").startswith("451 4.5.0 ")]

        self.assertTrue(up.wait_for(failures, WAIT_S, 0.1),
                        "no event=upstream_failed with 451 4.5.0;\n%s"
                        % srv.stderr_text()[-3000:])
        print("relay answering ahead: %s" % failures()[0].get("reply"), file=sys.stderr)

        def deferred_all():
            ev = [e for e in up.log_events(srv, "delivery") if e.get("id", "").upper() == qid]
            first = [e for e in ev if e.get("attempt") == "1"]
            return len(first) == RCPT_COUNT and first
        first = up.wait_for(deferred_all, WAIT_S, 0.1)
        self.assertTrue(first, "not every recipient deferred at the first attempt;\n%s"
                        % srv.stderr_text()[-3000:])
        for e in first:
            self.assertEqual((e.get("result"), e.get("reply")), ("deferred", "451 4.5.0"), e)

        # queued, waiting for a retry: the delivery log says so
        m = up.wait_for(lambda: self.deferred_line(srv, qid), WAIT_S, 0.2)
        self.assertIsNotNone(m, "%s not in ringmx-store ls --deferred" % qid)
        self.assertEqual(m.group("reply"), "451 4.5.0", m.group(0))
        self.assertEqual((m.group("pending"), m.group("total")),
                         (str(RCPT_COUNT), str(RCPT_COUNT)), m.group(0))
        self.assertGreaterEqual(int(m.group("attempts")), 1, m.group(0))

        # a sane relay takes over the port: the message goes to everyone once
        port = relay.port
        relay.stop()
        sink = up.Sink(port=port)
        self.addCleanup(sink.cleanup)
        sink.start()

        def delivered():
            return [d for d in sink.dumps() if token.encode() in d.message]
        got = up.wait_for(delivered, WAIT_S, 0.2)
        self.assertTrue(got, "not delivered once a sane relay answered;\n%s"
                        % srv.stderr_text()[-3000:])
        self.assertEqual(len(got), 1, got)
        self.assertEqual(sorted(got[0].rcpt_addrs), rcpts)

        def done():
            ev = [e for e in up.log_events(srv, "delivery")
                  if e.get("id", "").upper() == qid and e.get("result") == "delivered"]
            return len(ev) == RCPT_COUNT and ev
        self.assertTrue(up.wait_for(done, WAIT_S, 0.1), "not every recipient logged "
                        "result=delivered;\n%s" % srv.stderr_text()[-3000:])
        up.wait_for(lambda: self.deferred_line(srv, qid) is None, WAIT_S, 0.2)
        self.assertIsNone(self.deferred_line(srv, qid), "still deferred after delivery")
        h.stop_and_check(srv)


if __name__ == "__main__":
    unittest.main()
