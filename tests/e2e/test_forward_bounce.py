#!/usr/bin/env python3
"""Bounces on the forward path, against real upstreams:

- a 554 to DATA (Postfix smtpd_data_restrictions for one sender) fails
  every recipient at once: one DSN to the sender names each of them;
- a recipient that keeps getting 450 past max_queue_lifetime expires: a
  DSN with Action: failed reaches the sender, the other recipient was
  delivered at once and is not in the DSN;
- smtp-sink hard-rejects every RCPT (-f RCPT): the message bounces, the
  DSN (from <>) bounces too and is dropped (event=bounce_suppressed), no
  bounce loop: the gateway falls quiet and its store drains.
"""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

HELO = "bounce.client.example"
DATA_REJECTED = "dataref@client.example"
SENDER = "sender@client.example"
GOOD = "good@" + h.DOMAIN
BUSY = "busy@" + h.DOMAIN
LIFETIME_S = 6
DELIVERY_TIMEOUT_S = 60.0


def dsn_recipients(testcase, data, what):
    """Parses a delivered DSN; checks the RFC 3464 structure; returns the
    per-recipient blocks as {final_recipient: block}."""
    msg = up.parse_message(data)
    testcase.assertEqual(msg.get_content_type(), "multipart/report", what)
    testcase.assertEqual(msg.get_param("report-type"), "delivery-status", what)
    parts = list(msg.iter_parts())
    types = [p.get_content_type() for p in parts]
    testcase.assertEqual(types[0], "text/plain", "%s: parts %r" % (what, types))
    testcase.assertEqual(types[1], "message/delivery-status", "%s: parts %r" % (what, types))
    blocks = parts[1].get_payload()
    testcase.assertIsNotNone(blocks[0]["Reporting-MTA"], "%s: %s" % (what, blocks[0]))
    out = {}
    for b in blocks[1:]:
        m = re.match(r"(?i)^rfc822;\s*(\S+)$", str(b["Final-Recipient"]).strip())
        testcase.assertIsNotNone(m, "%s: Final-Recipient %r" % (what, b["Final-Recipient"]))
        testcase.assertNotIn(m.group(1), out, "%s: recipient listed twice" % what)
        out[m.group(1)] = b
    return out


class ForwardBounces(unittest.TestCase):

    def setUp(self):
        up.require_root()

    def postfix(self, **kw):
        relay = up.PostfixRelay(**kw)
        self.addCleanup(relay.cleanup)
        relay.start()
        return relay

    def gateway(self, port, **kw):
        srv = h.Server(settings=up.forward_settings([port], **kw))
        self.addCleanup(srv.cleanup)
        srv.start()
        return srv

    def send(self, srv, body, sender, rcpts):
        with srv.conn() as c:
            qid = h.send_message(self, c, body, sender=sender, rcpts=rcpts, helo=HELO)
            c.cmd("QUIT")
        return qid

    def wait_mail(self, relay, address, token, srv):
        got = up.wait_for(lambda: [m for _, m in relay.messages(address)
                                   if token.encode() in m], DELIVERY_TIMEOUT_S, 0.2)
        if not got:
            self.fail("nothing with %s for %s;\ngateway log:\n%s\nPostfix log:\n%s"
                      % (token, address, srv.stderr_text()[-3000:],
                         relay.log_text()[-3000:]))
        return got

    def test_data_554_fails_every_recipient(self):
        rcpts = ["a1@" + h.DOMAIN, "a2@" + h.DOMAIN, "a3@" + h.DOMAIN]
        relay = self.postfix(domains=[h.DOMAIN, "client.example"],
                             mailboxes=rcpts + [DATA_REJECTED],
                             reject_data_from=[DATA_REJECTED])
        srv = self.gateway(relay.port)
        token = h.unique_token("data554")
        body = b"Subject: " + token.encode() + b"\r\n\r\nrefused at DATA\r\n"
        qid = self.send(srv, body, DATA_REJECTED, rcpts)
        dsn = self.wait_mail(relay, DATA_REJECTED, token, srv)
        time.sleep(1.0)
        dsns = [m for _, m in relay.messages(DATA_REJECTED) if token.encode() in m]
        self.assertEqual(len(dsns), 1, "%d DSNs for one failed message" % len(dsns))
        for r in rcpts:
            self.assertEqual(relay.messages(r), [], "%s got the refused message" % r)
        blocks = dsn_recipients(self, dsn[0], "DSN for %s" % qid)
        self.assertEqual(sorted(blocks), sorted(rcpts), "one block per failed recipient")
        for r, b in blocks.items():
            self.assertEqual(str(b["Action"]).strip().lower(), "failed", r)
            self.assertEqual(str(b["Status"]).strip(), "5.7.1", "%s: %s" % (r, b))
        results = [e.get("result") for e in up.log_events(srv, "delivery")
                   if e.get("id", "").upper() == qid]
        self.assertEqual(results, ["bounced"] * 3, results)
        h.stop_and_check(srv)

    def test_too_big_for_upstream(self):
        # Postfix advertises SIZE 100000; a 200 kB message cannot be relayed
        relay = self.postfix(domains=[h.DOMAIN, "client.example"], mailboxes=[GOOD, SENDER],
                             main_extra=["message_size_limit = 100000"])
        srv = self.gateway(relay.port)
        token = h.unique_token("toobig")
        line = b"z" * 78 + b"\r\n"
        body = b"Subject: " + token.encode() + b"\r\n\r\n" + line * 2500
        qid = self.send(srv, body, SENDER, [GOOD])
        small = h.unique_token("small")
        self.send(srv, b"Subject: " + small.encode() + b"\r\n\r\nfits\r\n", SENDER, [GOOD])
        self.wait_mail(relay, GOOD, small, srv)
        dsn = self.wait_mail(relay, SENDER, token, srv)
        self.assertEqual([m for _, m in relay.messages(GOOD) if token.encode() in m], [])
        blocks = dsn_recipients(self, dsn[0], "size DSN for %s" % qid)
        self.assertEqual(list(blocks), [GOOD])
        self.assertEqual(str(blocks[GOOD]["Action"]).strip().lower(), "failed")
        self.assertRegex(str(blocks[GOOD]["Status"]).strip(), r"^5\.[23]\.4$")
        self.assertLess(len(dsn[0]), 60000, "the DSN must not carry the whole big message")
        h.stop_and_check(srv)

    def test_queue_lifetime_expiry(self):
        relay = self.postfix(domains=[h.DOMAIN, "client.example"],
                             mailboxes=[GOOD, BUSY, SENDER], tempfail=[BUSY])
        srv = self.gateway(relay.port, extra=[("max_queue_lifetime", "%ds" % LIFETIME_S)])
        token = h.unique_token("expire")
        body = b"Subject: " + token.encode() + b"\r\n\r\none busy recipient\r\n"
        t0 = time.monotonic()
        qid = self.send(srv, body, SENDER, [GOOD, BUSY])
        self.wait_mail(relay, GOOD, token, srv)
        dsn = self.wait_mail(relay, SENDER, token, srv)
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, LIFETIME_S - 1,
                                "bounced after %.1fs, before max_queue_lifetime=%ds"
                                % (elapsed, LIFETIME_S))
        deferred = [e for e in up.log_events(srv, "delivery")
                    if e.get("id", "").upper() == qid and e.get("rcpt") == BUSY]
        self.assertGreaterEqual(len(deferred), 2, "the busy recipient was retried: %r"
                                % deferred)
        self.assertTrue(all(e.get("result") == "deferred" for e in deferred), deferred)
        # each attempt's line says how long the message has waited, growing
        delays = [int(e["delay_ms"]) for e in deferred]
        self.assertEqual(delays, sorted(delays), deferred)
        self.assertGreater(delays[-1], delays[0], deferred)
        blocks = dsn_recipients(self, dsn[0], "expiry DSN for %s" % qid)
        self.assertEqual(list(blocks), [BUSY], "only the expired recipient is reported")
        b = blocks[BUSY]
        self.assertEqual(str(b["Action"]).strip().lower(), "failed", str(b))
        status = str(b["Status"]).strip()
        self.assertRegex(status, r"^[45]\.\d{1,3}\.\d{1,3}$")
        # the relay's last temporary refusal is named, not only the expiry
        self.assertRegex(" ".join(str(b["Diagnostic-Code"]).split()),
                         r"expired after \d+ attempts; last reply 45\d 4\.\d+\.\d+")
        print("expiry DSN after %.1fs: Status %s, Diagnostic-Code %s"
              % (elapsed, status, b["Diagnostic-Code"]), file=sys.stderr)
        time.sleep(3.0)  # retry_max is 2s: no attempt may follow the bounce
        after = [e for e in up.log_events(srv, "delivery")
                 if e.get("id", "").upper() == qid and e.get("rcpt") == BUSY]
        self.assertEqual(len(after), len(deferred), "the expired recipient is still tried")
        h.stop_and_check(srv)

    def test_expiry_while_upstream_down(self):
        # nothing listens until after max_queue_lifetime: the message expires
        # unsent, its DSN waits in the queue and goes out once a relay is up
        port = h.free_port()
        srv = self.gateway(port, extra=[("max_queue_lifetime", "%ds" % LIFETIME_S)])
        token = h.unique_token("expdown")
        body = b"Subject: " + token.encode() + b"\r\n\r\nnever sent\r\n"
        qid = self.send(srv, body, SENDER, [GOOD])
        self.assertTrue(up.wait_for(lambda: [e for e in up.log_events(srv, "bounce")
                                             if e.get("id", "").upper() == qid],
                                    LIFETIME_S + 15, 0.2),
                        "no event=bounce after max_queue_lifetime with the relay down:\n%s"
                        % srv.stderr_text()[-3000:])
        sink = up.Sink(port=port)
        self.addCleanup(sink.cleanup)
        sink.start()

        def dsn():
            return [d for d in sink.dumps() if d.sender == "" and token.encode() in d.message]

        got = up.wait_for(dsn, DELIVERY_TIMEOUT_S, 0.2)
        self.assertTrue(got, "the expiry DSN never reached the relay once it was up:\n%s"
                        % srv.stderr_text()[-3000:])
        self.assertEqual(got[0].rcpt_addrs, [SENDER])
        blocks = dsn_recipients(self, got[0].message, "expiry DSN for %s" % qid)
        self.assertEqual(list(blocks), [GOOD])
        self.assertEqual(str(blocks[GOOD]["Action"]).strip().lower(), "failed")
        time.sleep(2.0)
        originals = [d for d in sink.dumps() if d.sender == SENDER]
        self.assertEqual(originals, [], "the expired message was sent after all")
        self.assertEqual(len(dsn()), 1)
        h.stop_and_check(srv)

    def test_rejected_dsn_is_dropped_without_a_loop(self):
        sink = up.Sink(extra=["-f", "RCPT"])
        self.addCleanup(sink.cleanup)
        sink.start()
        srv = self.gateway(sink.port)
        token = h.unique_token("loop")
        body = b"Subject: " + token.encode() + b"\r\n\r\nevery RCPT fails\r\n"
        qid = self.send(srv, body, SENDER, [GOOD])

        def suppressed():
            return up.log_events(srv, "bounce_suppressed")

        got = up.wait_for(suppressed, 30, 0.2)
        self.assertTrue(got, "the DSN of a bounced message was not dropped when it bounced;"
                        "\n%s" % srv.stderr_text()[-3000:])
        self.assertEqual(got[0].get("reason"), "null_reverse_path", got[0])
        bounces = up.log_events(srv, "bounce")
        self.assertEqual(len(bounces), 1, "one DSN for the message, none for the DSN: %r"
                         % bounces)
        self.assertEqual(bounces[0].get("id", "").upper(), qid)
        n = len(up.log_events(srv, "delivery"))
        self.assertEqual(n, 2, "the message and its DSN, each tried once")
        time.sleep(3.0)
        self.assertEqual(len(up.log_events(srv, "delivery")), n, "attempts continue: a loop")
        self.assertEqual(sink.dumps(), [])
        h.stop_and_check(srv)


if __name__ == "__main__":
    unittest.main()
