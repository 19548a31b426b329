#!/usr/bin/env python3
"""Forwarding into a real Postfix smtpd (a private instance on loopback):

- XFORWARD: Postfix trusts the gateway (smtpd_authorized_xforward_hosts)
  and must see the ORIGINAL client's HELO and address, not the gateway's
  own EHLO name; the message lands byte-exact after Postfix's headers.
- Per-recipient 5xx: Postfix rejects one recipient with 550 5.1.1 at RCPT
  (check_recipient_access) and accepts the others. The others are
  delivered once; the sender gets exactly one RFC 3464 DSN, relayed
  through the same Postfix: multipart/report; report-type=delivery-status,
  a message/delivery-status part naming the rejected recipient with
  Action: failed and a 5.x.x Status, from the null reverse path.
- 250, 550 and 450 in one transaction: only the 450 recipient is retried
  (until Postfix is reloaded without the 450), nobody gets two copies.
- A client on ::1: XFORWARD names it so that Postfix accepts it, and its
  mail is delivered.
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

ORIG_HELO = "orig-client.helo.example"
SENDER = "sender@client.example"
GOOD = ["good1@" + h.DOMAIN, "good2@" + h.DOMAIN]
BAD = "nosuchuser@" + h.DOMAIN
BUSY = "busy@" + h.DOMAIN
GATEWAY_EHLO = "gw-upstream.e2e.test"
CLIENT_IP = "127.0.0.2"  # the original client; the gateway talks from 127.0.0.1
DELIVERY_TIMEOUT_S = 60.0


class ForwardIntoPostfix(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        up.require_root()
        cls.server = None
        cls.relay = up.PostfixRelay(domains=[h.DOMAIN, "client.example"],
                                    mailboxes=GOOD + [BAD, BUSY, SENDER], reject=[BAD],
                                    tempfail=[BUSY])
        try:
            cls.relay.start()
            cls.server = h.Server(settings=up.forward_settings(
                [cls.relay.port], extra=[("upstream_helo", GATEWAY_EHLO)]))
            cls.server.start()
        except BaseException:
            if cls.server is not None:
                cls.server.cleanup()
            cls.relay.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            h.stop_and_check(cls.server)
        finally:
            cls.relay.cleanup()

    def send(self, body, rcpts):
        with up.SourceConn(self.server.port, CLIENT_IP) as c:
            qid = h.send_message(self, c, body, sender=SENDER, rcpts=rcpts, helo=ORIG_HELO)
            c.cmd("QUIT")
        return qid

    def wait_messages(self, address, token, count=1):
        key = token.encode()

        def find():
            got = [(p, m) for p, m in self.relay.messages(address) if key in m]
            return got if len(got) >= count else None

        got = up.wait_for(find, DELIVERY_TIMEOUT_S, 0.2)
        if not got:
            self.fail("no message with %s in %s's Maildir within %.0fs;\ngateway log tail:\n"
                      "%s\nPostfix log tail:\n%s"
                      % (token, address, DELIVERY_TIMEOUT_S,
                         self.server.stderr_text()[-3000:], self.relay.log_text()[-3000:]))
        return got

    def test_xforward_original_client(self):
        token = h.unique_token("xfwd")
        # complete headers, so that Postfix adds none of its own
        body = (b"From: <" + SENDER.encode() + b">\r\nTo: <" + GOOD[0].encode()
                + b">\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <"
                + token.encode() + b"@client.example>\r\nSubject: " + token.encode()
                + b"\r\nX-E2E-Log: " + token.encode()
                + b"\r\n\r\n.dot line\r\nbody\r\n")
        qid = self.send(body, GOOD[:1])
        (path, data), = self.wait_messages(GOOD[0], token)
        # smtpd logs the connection (the gateway) and the XFORWARD'ed client
        log = self.relay.log_text()
        self.assertRegex(log, r"client=localhost\[127\.0\.0\.1\], orig_client=\S*\[%s\]"
                         % re.escape(CLIENT_IP),
                         "Postfix did not log the original client address %s (XFORWARD ADDR)"
                         % CLIENT_IP)
        # cleanup's WARN line for our header carries the client it was told
        # about: the original address and HELO, not the gateway's EHLO name
        warn = [l for l in log.splitlines() if "warning: header X-E2E-Log: " + token in l]
        self.assertEqual(len(warn), 1, "no single header_checks WARN line for %s in the "
                         "Postfix log:\n%s" % (token, log[-3000:]))
        self.assertIn("[%s]" % CLIENT_IP, warn[0], warn[0])
        self.assertIn("helo=<%s>" % ORIG_HELO, warn[0],
                      "Postfix did not see the original HELO (XFORWARD HELO): " + warn[0])
        self.assertIn("proto=ESMTP", warn[0], warn[0])
        self.assertNotIn(GATEWAY_EHLO, warn[0])
        # Postfix's own Received: names the connection it had (the gateway);
        # the gateway's Received: names the original client
        m = re.search(rb"Received: from (\S+) \(([^)]*)\)\s+by relay\.e2e\.test \(Postfix\)",
                      data)
        self.assertIsNotNone(m, "no Postfix Received: header in %r" % data[:800])
        self.assertEqual(m.group(1).decode(), GATEWAY_EHLO, "upstream_helo is the EHLO name")
        # after Postfix's headers: the gateway's Received:, then the message
        # (a Maildir file has LF line ends; the message has no bare CR or LF)
        crlf = data.replace(b"\n", b"\r\n")
        start = crlf.find(b"Received: from " + ORIG_HELO.encode() + b" ([%s])"
                          % CLIENT_IP.encode())
        self.assertGreaterEqual(start, 0, "the gateway's Received: header is missing: %r"
                                % data[:1000])
        header, tail = h.split_received(crlf[start:])
        h.check_received(self, header, ORIG_HELO, CLIENT_IP, qid)
        self.assertEqual(tail, body, "Postfix stored a different message")

    def test_per_recipient_5xx_dsn(self):
        token = h.unique_token("dsn")
        body = (b"Subject: " + token.encode() + b"\r\nMessage-ID: <" + token.encode()
                + b"@client.example>\r\n\r\nto two good and one bad\r\n")
        qid = self.send(body, [GOOD[0], BAD, GOOD[1]])
        for addr in GOOD:
            got = self.wait_messages(addr, token)
            self.assertEqual(len(got), 1, "%s got %d copies" % (addr, len(got)))
        self.assertEqual(self.relay.messages(BAD), [], "the rejected recipient got mail")

        (path, data), = self.wait_messages(SENDER, token)
        up.wait_for(lambda: False, 1.0)  # a second DSN would follow closely
        dsns = [m for _, m in self.relay.messages(SENDER) if token.encode() in m]
        self.assertEqual(len(dsns), 1, "the sender got %d DSNs" % len(dsns))
        msg = up.parse_message(data)
        self.assertIn(msg["Return-Path"], ("<>", "<MAILER-DAEMON>"),
                      "a DSN must come from the null reverse path")
        self.assertEqual(msg.get_content_type(), "multipart/report", data[:2000])
        self.assertEqual(msg.get_param("report-type"), "delivery-status", data[:2000])
        self.assertIn(SENDER, str(msg["To"]))
        parts = list(msg.iter_parts())
        self.assertGreaterEqual(len(parts), 2, "multipart/report with %d parts" % len(parts))
        self.assertEqual(parts[0].get_content_type(), "text/plain")
        self.assertIn(BAD, parts[0].get_content(), "the human-readable part names the "
                      "failed recipient")
        status_parts = [p for p in parts if p.get_content_type() == "message/delivery-status"]
        self.assertEqual(len(status_parts), 1, [p.get_content_type() for p in parts])
        blocks = status_parts[0].get_payload()
        self.assertGreaterEqual(len(blocks), 2, "delivery-status needs per-message and "
                                "per-recipient fields: %r" % blocks)
        per_message = blocks[0]
        self.assertIsNotNone(per_message["Reporting-MTA"], str(per_message))
        self.assertTrue(str(per_message["Reporting-MTA"]).lower().startswith("dns;"),
                        per_message["Reporting-MTA"])
        recipients = blocks[1:]
        self.assertEqual(len(recipients), 1, "one failed recipient, got blocks %s"
                         % [str(b) for b in recipients])
        r = recipients[0]
        final = str(r["Final-Recipient"])
        self.assertRegex(final, r"(?i)^rfc822;\s*" + re.escape(BAD) + "$")
        self.assertEqual(str(r["Action"]).strip().lower(), "failed")
        self.assertRegex(str(r["Status"]).strip(), r"^5\.\d{1,3}\.\d{1,3}$")
        self.assertEqual(str(r["Status"]).strip(), "5.1.1", "Postfix said 550 5.1.1")
        if r["Diagnostic-Code"] is not None:
            self.assertRegex(str(r["Diagnostic-Code"]), r"(?i)^smtp;\s*550")
        # the original (or its headers) is returned
        returned = [p for p in parts[2:] if p.get_content_type() in
                    ("message/rfc822", "text/rfc822-headers")]
        self.assertEqual(len(returned), 1, [p.get_content_type() for p in parts])
        self.assertIn(token.encode(), returned[0].as_bytes())
        # the gateway logged one bounce for this message, to the sender
        bounces = [e for e in up.log_events(self.server, "bounce")
                   if e.get("id", "").upper() == qid]
        self.assertEqual(len(bounces), 1, "event=bounce lines for %s: %r" % (qid, bounces))
        results = {e.get("rcpt"): e.get("result") for e in up.log_events(self.server, "delivery")
                   if e.get("id", "").upper() == qid}
        self.assertEqual(results, {GOOD[0]: "delivered", GOOD[1]: "delivered", BAD: "bounced"})

    # "zz": unittest runs methods by name; this one reloads Postfix without
    # the 450 for BUSY, so it goes last
    def test_zz_mixed_outcomes_retry_only_the_deferred(self):
        """250, 550 and 450 in one transaction: the 250 recipient gets one
        copy, the 550 one a DSN at once, the 450 one is retried until
        Postfix accepts it, without a second copy for anyone else."""
        token = h.unique_token("mixed")
        body = b"Subject: " + token.encode() + b"\r\n\r\nmixed outcomes\r\n"
        qid = self.send(body, [GOOD[0], BAD, BUSY])
        self.wait_messages(GOOD[0], token)
        (path, dsn), = self.wait_messages(SENDER, token)

        def busy_deferrals():
            return [e for e in up.log_events(self.server, "delivery")
                    if e.get("id", "").upper() == qid and e.get("rcpt") == BUSY]

        self.assertTrue(up.wait_for(lambda: len(busy_deferrals()) >= 2, 20, 0.2),
                        "the 450 recipient was not retried: %r" % busy_deferrals())
        self.assertTrue(all(e.get("result") == "deferred" for e in busy_deferrals()))
        self.relay.set_rcpt_access(reject=[BAD])
        self.wait_messages(BUSY, token)
        up.wait_for(lambda: False, 2.0)
        self.assertEqual(len([m for _, m in self.relay.messages(GOOD[0])
                              if token.encode() in m]), 1, "the 250 recipient got a copy "
                         "again when the 450 one was retried")
        self.assertEqual(len([m for _, m in self.relay.messages(BUSY)
                              if token.encode() in m]), 1)
        dsns = [m for _, m in self.relay.messages(SENDER) if token.encode() in m]
        self.assertEqual(len(dsns), 1, "%d DSNs" % len(dsns))
        msg = up.parse_message(dsns[0])
        status = [p for p in msg.iter_parts()
                  if p.get_content_type() == "message/delivery-status"][0]
        finals = [str(b["Final-Recipient"]) for b in status.get_payload()[1:]]
        self.assertEqual(len(finals), 1, finals)
        self.assertIn(BAD, finals[0], "the DSN reports only the 550 recipient")
        results = [(e.get("rcpt"), e.get("result")) for e in up.log_events(self.server,
                                                                           "delivery")
                   if e.get("id", "").upper() == qid]
        self.assertEqual(results.count((GOOD[0], "delivered")), 1, results)
        self.assertEqual(results.count((BAD, "bounced")), 1, results)
        self.assertEqual(results.count((BUSY, "delivered")), 1, results)


class ForwardIpv6ClientIntoPostfix(unittest.TestCase):
    """A client on ::1: XFORWARD must name it the way Postfix accepts
    (ADDR=IPV6:...; a bare IPv6 address gets 501 5.5.4), and mail from it
    must be delivered, never bounced because of XFORWARD."""

    def test_ipv6_client(self):
        up.require_root()
        if not h.ipv6_loopback_available():
            self.skipTest("no IPv6 loopback")
        relay = up.PostfixRelay(domains=[h.DOMAIN, "client.example"], mailboxes=GOOD[:1],
                                main_extra=["inet_protocols = all"])
        self.addCleanup(relay.cleanup)
        relay.start()
        port6 = h.free_port(h.socket.AF_INET6)
        srv = h.Server(settings=up.forward_settings([relay.port]),
                       listen=["%s:%d" % (h.LOOPBACK4, h.free_port()), "[::1]:%d" % port6])
        self.addCleanup(srv.cleanup)
        srv.start()
        token = h.unique_token("v6")
        body = (b"From: <" + SENDER.encode() + b">\r\nTo: <" + GOOD[0].encode()
                + b">\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <"
                + token.encode() + b"@client.example>\r\nSubject: " + token.encode()
                + b"\r\nX-E2E-Log: " + token.encode() + b"\r\n\r\nfrom ::1\r\n")
        with h.SmtpConn(port6, host=h.LOOPBACK6) as c:
            qid = h.send_message(self, c, body, sender=SENDER, rcpts=GOOD[:1], helo=ORIG_HELO)
            c.cmd("QUIT")
        def delivered():
            return [m for _, m in relay.messages(GOOD[0]) if token.encode() in m]

        def bounced():
            return [e for e in up.log_events(srv, "delivery")
                    if e.get("id", "").upper() == qid and e.get("result") == "bounced"]

        up.wait_for(lambda: delivered() or bounced(), DELIVERY_TIMEOUT_S, 0.2)
        got = delivered()
        results = [(e.get("result"), e.get("reply")) for e in up.log_events(srv, "delivery")
                   if e.get("id", "").upper() == qid]
        self.assertTrue(got, "mail from an IPv6 client was not delivered through Postfix; "
                        "gateway outcomes %r" % results)
        warn = [l for l in relay.log_text().splitlines()
                if "warning: header X-E2E-Log: " + token in l]
        self.assertEqual(len(warn), 1, relay.log_text()[-2000:])
        self.assertIn("[::1]", warn[0], "Postfix did not see the original client ::1: "
                      + warn[0])
        self.assertIn("helo=<%s>" % ORIG_HELO, warn[0], warn[0])
        h.stop_and_check(srv)


if __name__ == "__main__":
    unittest.main()
