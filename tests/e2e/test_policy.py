#!/usr/bin/env python3
"""Recipient policy (fail closed): served domains only, routing tricks and
address literals refused with 554 5.7.1, the trailing-dot domain accepted,
recipients_file with exact local parts, case-insensitive domains and
@domain catch-alls (unknown users 550 5.1.1), and max_recipients (452 4.5.3).
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

RELAY_DENIED = "Relay access denied"


class DomainsTest(h.ServerTestCase, unittest.TestCase):
    settings = [("accept_domains", "example.com Example.NET")]

    def rcpt(self, address, code, enhanced, contains=None):
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<s@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:%s" % address, code, enhanced, contains=contains)

    def deny(self, address):
        self.rcpt(address, 554, "5.7.1", RELAY_DENIED)

    def accept(self, address):
        self.rcpt(address, 250, "2.1.5")

    def test_served_domains(self):
        self.accept("<user@example.com>")
        self.accept("<user@EXAMPLE.COM>")
        self.accept("<user@example.net>")
        self.accept("<User.Name+tag@Example.Net>")
        self.accept("<postmaster@example.com>")

    def test_quoted_local_part(self):
        self.accept('<"john doe"@example.com>')
        self.accept('<"a.b"@example.com>')

    def test_postmaster_without_domain(self):
        # RFC 5321 4.5.1: <Postmaster> must be accepted.
        self.accept("<Postmaster>")

    def test_trailing_dot(self):
        self.accept("<user@example.com.>")

    def test_other_domains_denied(self):
        self.deny("<user@elsewhere.example>")
        self.deny("<user@sub.example.com>")
        self.deny("<user@example.com.evil.example>")
        self.deny("<user@notexample.com>")

    def test_routing_tricks_denied(self):
        self.deny("<user%elsewhere.example@example.com>")
        self.deny("<elsewhere.example!user@example.com>")
        self.deny('<"user@elsewhere.example"@example.com>')
        self.deny("<@example.com:user@elsewhere.example>")
        self.deny("<@example.com,@example.net:user@elsewhere.example>")

    def test_address_literals_denied(self):
        self.deny("<user@[127.0.0.1]>")
        self.deny("<user@[IPv6:::1]>")

    def test_refused_recipient_does_not_end_transaction(self):
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<s@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<a@elsewhere.example>", 554, "5.7.1", RELAY_DENIED)
            self.expect(c, "RCPT TO:<a@example.com>", 250, "2.1.5")
            self.expect(c, "DATA", 354)
            payload = b"Subject: one good rcpt\r\n\r\nx\r\n.\r\n"
            c.send(payload)
            qid = h.queued_id(self, c.reply(), payload)
        entry = [m for m in self.server.ls() if m["id"] == qid][0]
        self.assertEqual(entry["to"], "<a@example.com>")

    def test_data_without_accepted_recipient(self):
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<s@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<a@elsewhere.example>", 554, "5.7.1", RELAY_DENIED)
            r = c.cmd("DATA")
            self.assertGreaterEqual(r.code, 500, "DATA with no accepted recipient: %r" % r.text)


class RecipientsFileTest(h.ServerTestCase, unittest.TestCase):
    """recipients_file: local part exact, domain case-insensitive, @domain catch-all."""

    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.rcpt_dir = tempfile.mkdtemp(prefix="ringmx-e2e-rcpt-")
        path = os.path.join(cls.rcpt_dir, "recipients")
        with open(path, "w") as f:
            f.write("# listed users\n"
                    "alice@example.com\n"
                    "Bob@EXAMPLE.com\n"
                    "\n"
                    "odd%route@example.com\n"
                    "@catchall.example.org\n")
        cls.settings = [("accept_domains", "example.com catchall.example.org"),
                        ("recipients_file", path)]
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        import shutil
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.rcpt_dir, ignore_errors=True)

    def rcpt(self, address, code, enhanced, contains=None):
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<s@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:%s" % address, code, enhanced, contains=contains)

    def test_listed(self):
        self.rcpt("<alice@example.com>", 250, "2.1.5")
        self.rcpt("<alice@EXAMPLE.COM>", 250, "2.1.5")
        self.rcpt("<Bob@example.com>", 250, "2.1.5")
        self.rcpt("<alice@example.com.>", 250, "2.1.5")

    def test_unknown_users(self):
        self.rcpt("<mallory@example.com>", 550, "5.1.1")
        self.rcpt("<Alice@example.com>", 550, "5.1.1")
        self.rcpt("<bob@example.com>", 550, "5.1.1")

    def test_catch_all(self):
        self.rcpt("<anyone@catchall.example.org>", 250, "2.1.5")
        self.rcpt("<Some.One@CATCHALL.example.org>", 250, "2.1.5")

    def test_listed_routing_address(self):
        self.rcpt("<odd%route@example.com>", 250, "2.1.5")
        self.rcpt("<other%route@example.com>", 554, "5.7.1", RELAY_DENIED)

    def test_not_served(self):
        self.rcpt("<alice@elsewhere.example>", 554, "5.7.1", RELAY_DENIED)


class MaxRecipientsTest(h.ServerTestCase, unittest.TestCase):
    settings = [("max_recipients", "3")]

    def test_past_max_recipients(self):
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<s@client.example>", 250, "2.1.0")
            for i in range(3):
                self.expect(c, "RCPT TO:<u%d@example.com>" % i, 250, "2.1.5")
            self.expect(c, "RCPT TO:<u3@example.com>", 452, "4.5.3")
            self.expect(c, "RCPT TO:<u4@example.com>", 452, "4.5.3")
            self.expect(c, "DATA", 354)
            payload = b"Subject: three\r\n\r\nx\r\n.\r\n"
            c.send(payload)
            qid = h.queued_id(self, c.reply(), payload)
            # the count starts again with the next transaction
            self.expect(c, "MAIL FROM:<s@client.example>", 250, "2.1.0")
            for i in range(3):
                self.expect(c, "RCPT TO:<v%d@example.com>" % i, 250, "2.1.5")
            self.expect(c, "RCPT TO:<v3@example.com>", 452, "4.5.3")
        entry = [m for m in self.server.ls() if m["id"] == qid][0]
        self.assertEqual(entry["to"], "<u0@example.com>,<u1@example.com>,<u2@example.com>")


if __name__ == "__main__":
    unittest.main()
