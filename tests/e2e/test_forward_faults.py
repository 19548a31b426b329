#!/usr/bin/env python3
"""Upstream faults and capability gaps on the forward path (Postfix
smtp-sink as upstream):

- 421 to RCPT (-Q RCPT), a disconnect right after the final dot without a
  reply (-q .), and an upstream that does not answer DATA within
  upstream_timeout (-w): each is a temporary failure; once smtp-sink
  behaves, the message is delivered (after a lost reply to the dot, at
  most once more: the duplicate count is printed);
- a SMTPUTF8 message to an upstream without SMTPUTF8, and an 8BITMIME one
  to an upstream without 8BITMIME (-8): not relayable, so the sender gets
  a DSN (delivered through the same sink) saying so;
- SIGTERM while the relay stalls on DATA exits promptly; a relay's
  recipient limit (452) only delays the recipients over it;
- upstream_connections bounds the connections the relay sees.
"""

import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

SENDER = "sender@client.example"
DELIVERY_TIMEOUT_S = 45.0


class ForwardFaults(unittest.TestCase):

    def setUp(self):
        up.require_root()

    def sink(self, extra):
        s = up.Sink(extra=extra)
        self.addCleanup(s.cleanup)
        s.start()
        return s

    def gateway(self, port, **kw):
        srv = h.Server(settings=up.forward_settings([port], **kw))
        self.addCleanup(srv.cleanup)
        srv.start()
        return srv

    def send(self, srv, body, rcpts=("user@" + h.DOMAIN,), mail_param=""):
        with srv.conn() as c:
            h.assert_reply(self, c.cmd("EHLO faults.client.example"), 250, sent=c.sent)
            h.assert_reply(self, c.cmd("MAIL FROM:<%s>%s" % (SENDER, mail_param)), 250,
                           "2.1.0", sent=c.sent)
            for r in rcpts:
                h.assert_reply(self, c.cmd("RCPT TO:<%s>" % r), 250, "2.1.5", sent=c.sent)
            h.assert_reply(self, c.cmd("DATA"), 354, sent=c.sent)
            payload = h.dot_stuff(body)
            c.send(payload)
            qid = h.queued_id(self, c.reply(), payload)
            c.cmd("QUIT")
        return qid

    def with_token(self, sink, token):
        return [d for d in sink.dumps() if token.encode() in d.message]

    def fault_then_recover(self, sink_args, settle_s=3.0, **gw):
        sink = self.sink(sink_args)
        srv = self.gateway(sink.port, **gw)
        token = h.unique_token("fault")
        body = b"Subject: " + token.encode() + b"\r\n\r\nfault " + " ".join(sink_args).encode() \
            + b"\r\n"
        qid = self.send(srv, body)
        deferred = up.wait_for(lambda: [e for e in up.log_events(srv, "delivery")
                                        if e.get("id", "").upper() == qid
                                        and e.get("result") == "deferred"], 30, 0.1)
        self.assertTrue(deferred, "no result=deferred for %s with smtp-sink %s;\n%s"
                        % (qid, sink_args, srv.stderr_text()[-3000:]))
        self.assertTrue(deferred[0].get("reply", "").startswith("4"), deferred[0])
        time.sleep(settle_s)
        before = len(self.with_token(sink, token))
        sink.stop()
        sink.start(extra=[])
        got = up.wait_for(lambda: len(self.with_token(sink, token)) > before,
                          DELIVERY_TIMEOUT_S, 0.2)
        self.assertTrue(got, "not delivered after smtp-sink recovered;\n%s"
                        % srv.stderr_text()[-3000:])
        time.sleep(2.0)
        copies = len(self.with_token(sink, token))
        done = [e for e in up.log_events(srv, "delivery")
                if e.get("id", "").upper() == qid and e.get("result") == "delivered"]
        self.assertEqual(len(done), 1, "event=delivery result=delivered lines: %r" % done)
        h.stop_and_check(srv)
        return deferred[0], copies

    def test_421_to_rcpt(self):
        ev, copies = self.fault_then_recover(["-Q", "RCPT"])
        self.assertEqual(copies, 1)

    def test_disconnect_after_dot(self):
        # the upstream may have the message; the gateway cannot know: at
        # least once, and no more than one extra copy per lost reply
        ev, copies = self.fault_then_recover(["-q", "."], settle_s=0.0,
                                             retry_min="3s", retry_max="3s")
        print("disconnect after dot: %d copies at the upstream" % copies, file=sys.stderr)
        self.assertGreaterEqual(copies, 1)
        self.assertLessEqual(copies, 2)

    def test_upstream_timeout(self):
        ev, copies = self.fault_then_recover(["-w", "30"], settle_s=0.0,
                                             extra=[("upstream_timeout", "2s")])
        self.assertEqual(copies, 1)

    def test_sigterm_while_upstream_stalls(self):
        # the relay sits on DATA for a minute and upstream_timeout is the
        # default 300s: a drain must not wait for it
        sink = self.sink(["-w", "60"])
        srv = h.Server(settings=up.forward_settings([sink.port])
                       + [("upstream_timeout", "300s")])
        self.addCleanup(srv.cleanup)
        srv.start()
        token = h.unique_token("stall")
        self.send(srv, b"Subject: " + token.encode() + b"\r\n\r\nstalled\r\n")
        time.sleep(2.0)  # the gateway is waiting for the 354 now
        t0 = time.monotonic()
        status = srv.stop(timeout=h.STOP_TIMEOUT_S)
        took = time.monotonic() - t0
        srv.check_stderr(self)
        self.assertEqual(status, 0, "exit status %r after SIGTERM with a stalled relay "
                         "(%.1fs)" % (status, took))
        self.assertLess(took, 10.0, "the drain waited %.1fs for a stalled relay" % took)
        sink.stop()
        sink.start(extra=[])
        srv.start()
        self.assertTrue(up.wait_for(lambda: self.with_token(sink, token), DELIVERY_TIMEOUT_S,
                                    0.2), "not delivered after the restart")
        time.sleep(1.0)
        self.assertEqual(len(self.with_token(sink, token)), 1)
        h.stop_and_check(srv)

    def test_recipient_limit_at_upstream(self):
        # Postfix takes 5 recipients per transaction and answers 452 4.5.3
        # to the rest: those are retried, nobody gets two copies
        rcpts = ["r%02d@%s" % (i, h.DOMAIN) for i in range(12)]
        relay = up.PostfixRelay(domains=[h.DOMAIN, "client.example"], mailboxes=rcpts,
                                main_extra=["smtpd_recipient_limit = 5"])
        self.addCleanup(relay.cleanup)
        relay.start()
        srv = self.gateway(relay.port)
        token = h.unique_token("rcptlimit")
        qid = self.send(srv, b"Subject: " + token.encode() + b"\r\n\r\nmany\r\n",
                        rcpts=rcpts)

        def all_in():
            return all(any(token.encode() in m for _, m in relay.messages(r)) for r in rcpts)

        self.assertTrue(up.wait_for(all_in, DELIVERY_TIMEOUT_S, 0.3),
                        "not every recipient got the message;\n%s"
                        % srv.stderr_text()[-3000:])
        time.sleep(2.0)
        for r in rcpts:
            n = len([m for _, m in relay.messages(r) if token.encode() in m])
            self.assertEqual(n, 1, "%s got %d copies" % (r, n))
        ev = [e for e in up.log_events(srv, "delivery") if e.get("id", "").upper() == qid]
        deferred = [e for e in ev if e.get("result") == "deferred"]
        self.assertTrue(deferred and all(e.get("reply", "").startswith("452") for e in deferred),
                        "the recipients over the limit should be deferred with 452: %r" % ev)
        self.assertEqual(sorted(e["rcpt"] for e in ev if e.get("result") == "delivered"),
                         rcpts)
        h.stop_and_check(srv)

    def test_upstream_connections_bound(self):
        # upstream_connections is per worker: with 2 workers and 2 each, the
        # relay never sees more than 4 connections, however much is queued
        ss = h.require_program("ss")
        sink = self.sink(["-w", "1"])
        srv = self.gateway(sink.port, extra=[("upstream_connections", "2")])
        tokens = []
        for i in range(3):
            with srv.conn() as c:  # new connections spread over the workers
                h.assert_reply(self, c.cmd("EHLO conns.example"), 250, sent=c.sent)
                for j in range(5):
                    t = h.unique_token("conns%d" % i)
                    h.send_message(self, c, b"Subject: " + t.encode() + b"\r\n\r\nx\r\n")
                    tokens.append(t)
        peak = 0
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            out = subprocess.run([ss, "-Htn", "state", "established", "dport", "= :%d"
                                  % sink.port], capture_output=True, text=True).stdout
            peak = max(peak, len([l for l in out.splitlines() if l.strip()]))
            if all(self.with_token(sink, t) for t in tokens):
                break
            time.sleep(0.05)
        self.assertTrue(all(self.with_token(sink, t) for t in tokens), "not all delivered")
        print("upstream connections: peak %d (limit 2 per worker, 2 workers)" % peak,
              file=sys.stderr)
        self.assertGreater(peak, 0)
        self.assertLessEqual(peak, 4)
        h.stop_and_check(srv)

    def dsn_for(self, sink, token, srv):
        """The DSN (from <>) whose returned part carries token."""
        def find():
            return [d for d in sink.dumps()
                    if d.sender == "" and token.encode() in d.message]
        got = up.wait_for(find, DELIVERY_TIMEOUT_S, 0.2)
        self.assertTrue(got, "no DSN at the upstream for %s;\n%s"
                        % (token, srv.stderr_text()[-3000:]))
        self.assertEqual(len(got), 1)
        d = got[0]
        self.assertEqual(d.rcpt_addrs, [SENDER])
        msg = up.parse_message(d.message)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        parts = list(msg.iter_parts())
        ctype = parts[1].get_content_type()
        self.assertIn(ctype, ("message/delivery-status", "message/global-delivery-status"))
        if ctype == "message/delivery-status":
            blocks = parts[1].get_payload()
        else:
            # global-delivery-status (RFC 6533) holds UTF-8 fields, which the
            # email package does not split into blocks: cut them from the raw
            # part (8bit: the bytes are as sent)
            raw = d.message
            at = raw.index(b"Content-Type: message/global-delivery-status")
            start = raw.index(b"\r\n\r\n", at) + 4
            end = raw.index(b"\r\n--" + msg.get_boundary().encode(), start)
            text = raw[start:end].decode("utf-8")
            blocks = [up.parse_message(b.strip("\r\n").encode("utf-8") + b"\n\n")
                      for b in re.split(r"\r\n\r\n", text) if b.strip()]
        if ctype == "message/global-delivery-status":
            # UTF-8 in the report needs an 8-bit path to the sender
            self.assertIn("BODY=8BITMIME", (d.mail_args or "").upper(), d)
        self.assertEqual(len(blocks), 2, [str(b) for b in blocks])
        return blocks[1]

    def test_smtputf8_to_upstream_without_it(self):
        sink = self.sink([])
        srv = self.gateway(sink.port)
        token = h.unique_token("utf8")
        rcpt = "j\u00f6rg@" + h.DOMAIN
        body = ("Subject: " + token + "\r\nTo: <" + rcpt + ">\r\n\r\nhall\u00f6\r\n").encode()
        qid = self.send(srv, body, rcpts=(rcpt,), mail_param=" SMTPUTF8 BODY=8BITMIME")
        block = self.dsn_for(sink, token, srv)
        self.assertEqual(str(block["Action"]).strip().lower(), "failed")
        self.assertRegex(str(block["Status"]).strip(), r"^5\.6\.\d+$", str(block))
        final = str(block["Final-Recipient"]).strip()
        self.assertIn(final.lower(), ("utf-8; " + rcpt.lower(), "rfc822; " + rcpt.lower()),
                      "Final-Recipient %r does not name %r" % (final, rcpt))
        self.assertEqual([d for d in sink.dumps() if d.sender == SENDER], [],
                         "the SMTPUTF8 message was relayed to an upstream without SMTPUTF8")
        ev = [e for e in up.log_events(srv, "delivery") if e.get("id", "").upper() == qid]
        self.assertEqual([e.get("result") for e in ev], ["bounced"], ev)
        h.stop_and_check(srv)

    def test_8bit_to_upstream_without_8bitmime(self):
        sink = self.sink(["-8"])
        srv = self.gateway(sink.port)
        token = h.unique_token("8bit7")
        body = ("Subject: " + token + "\r\n\r\ncaf\u00e9\r\n").encode()
        qid = self.send(srv, body, mail_param=" BODY=8BITMIME")
        block = self.dsn_for(sink, token, srv)
        self.assertEqual(str(block["Action"]).strip().lower(), "failed")
        self.assertRegex(str(block["Status"]).strip(), r"^5\.6\.\d+$", str(block))
        self.assertEqual([d for d in sink.dumps() if d.sender == SENDER], [])
        # the DSN itself must be relayable to a 7-bit upstream
        dsn = [d for d in sink.dumps() if d.sender == ""][0]
        self.assertTrue(all(b < 0x80 for b in dsn.message),
                        "the DSN sent to a 7-bit upstream contains 8-bit bytes")
        self.assertNotIn("BODY=8BITMIME", (dsn.mail_args or "").upper())
        ev = [e for e in up.log_events(srv, "delivery") if e.get("id", "").upper() == qid]
        self.assertEqual([e.get("result") for e in ev], ["bounced"], ev)
        h.stop_and_check(srv)


if __name__ == "__main__":
    unittest.main()
