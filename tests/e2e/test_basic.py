#!/usr/bin/env python3
"""Basic acceptance with real clients: a message sent with Python's smtplib
and with swaks is acknowledged with a queue id, and ringmx-store finds it
byte-exact behind a well-formed Received: header (dot-leading lines, 8-bit
bytes, ~990-octet lines). Also the ls/show/stats/verify views of the store.
"""

import os
import re
import smtplib
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

HELO = "client.e2e.example"


def awkward_body(token):
    """A body that exercises transparency and 8-bit transport."""
    lines = [
        b"From: Sender <sender@client.example>",
        b"To: user@example.com",
        b"Subject: e2e " + token.encode(),
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=iso-8859-1",
        b"Content-Transfer-Encoding: 8bit",
        b"",
        b"token " + token.encode(),
        b".leading dot",
        b"..two leading dots",
        b".",
        b"..",
        b" .space then dot",
        b"8-bit: caf\xe9 \xff\xfe\x80 na\xefve",
        b"tab\there and trailing space ",
        b"L" * 990,
        b"." + b"D" * 989,
        b"",
        b"",
        b"end " + token.encode(),
    ]
    return b"\r\n".join(lines) + b"\r\n"


class BasicTest(h.ServerTestCase, unittest.TestCase):
    settings = [("accept_domains", "example.com example.net")]

    def check_stored(self, queue_id, body, helo=HELO, sender="sender@client.example",
                     rcpts=("user@example.com",)):
        stored = self.server.show_body(queue_id)
        received, rest = h.split_received(stored)
        h.check_received(self, received, helo, "127.0.0.1", queue_id)
        self.assertEqual(rest, body, "stored body differs from the body sent "
                         "(queue id %s)" % queue_id)
        entries = {m["id"]: m for m in self.server.ls()}
        self.assertIn(queue_id, entries, "ls does not list %s" % queue_id)
        self.assertEqual(entries[queue_id]["from"], "<%s>" % sender)
        self.assertEqual(entries[queue_id]["to"], ",".join("<%s>" % r for r in rcpts))
        full = self.server.show(queue_id)
        envelope, message = h.split_show(full)
        self.assertIn("From: <%s>" % sender, envelope, "show envelope: %r" % envelope)
        to_lines = [l for l in envelope if l.startswith("To:")]
        for r in rcpts:
            self.assertTrue(any("<%s>" % r in l for l in to_lines),
                            "recipient %s not in show's To: lines %r" % (r, envelope))
        self.assertEqual(message, stored, "show's message differs from show --body")

    def test_smtplib_8bit_dots_long_lines(self):
        token = h.unique_token("smtplib")
        body = awkward_body(token)
        with smtplib.SMTP(h.LOOPBACK4, self.server.port, local_hostname=HELO,
                          timeout=h.SOCKET_TIMEOUT_S) as s:
            code, _ = s.ehlo()
            self.assertEqual(code, 250)
            self.assertTrue(s.has_extn("8bitmime"))
            self.assertTrue(s.has_extn("pipelining"))
            code, msg = s.mail("sender@client.example", ["BODY=8BITMIME"])
            self.assertEqual((code, msg[:5]), (250, b"2.1.0"), msg)
            code, msg = s.rcpt("user@example.com")
            self.assertEqual((code, msg[:5]), (250, b"2.1.5"), msg)
            code, msg = s.data(body)
            self.assertEqual(code, 250, msg)
            m = re.match(rb"^2\.0\.0 Ok: queued as ([0-9A-Fa-f]{16})$", msg)
            self.assertIsNotNone(m, "end-of-data reply %r" % msg)
            queue_id = m.group(1).decode().upper()
        self.check_stored(queue_id, body)

    def test_smtplib_sendmail_two_recipients(self):
        token = h.unique_token("sendmail")
        body = b"Subject: two\r\n\r\n" + token.encode() + b"\r\n"
        with smtplib.SMTP(h.LOOPBACK4, self.server.port, local_hostname=HELO,
                          timeout=h.SOCKET_TIMEOUT_S) as s:
            refused = s.sendmail("sender@client.example",
                                 ["a@example.com", "b@example.net"], body)
            self.assertEqual(refused, {})
        ids = [m["id"] for m in self.server.ls() if m["to"] == "<a@example.com>,<b@example.net>"]
        found = [i for i in ids if token.encode() in self.server.show_body(i)]
        self.assertEqual(len(found), 1, "expected one stored message with token %s" % token)
        self.check_stored(found[0], body, rcpts=("a@example.com", "b@example.net"))

    def run_swaks(self, data, extra=()):
        h.require_program("swaks")
        with tempfile.NamedTemporaryFile("wb", suffix=".eml", delete=False) as f:
            f.write(data)
            path = f.name
        try:
            cp = subprocess.run(["swaks", "--server", "%s:%d" % (h.LOOPBACK4, self.server.port),
                                 "--helo", HELO, "--from", "sender@client.example",
                                 "--to", "user@example.com", "--data", "@" + path,
                                 "--timeout", "15"] + list(extra),
                                capture_output=True, timeout=60)
        finally:
            os.unlink(path)
        out = cp.stdout.decode("latin-1")
        self.assertEqual(cp.returncode, 0, "swaks failed:\n%s\n%s" % (out, cp.stderr))
        m = re.search(r"<-\s+250 2\.0\.0 Ok: queued as ([0-9A-Fa-f]{16})\s*$", out, re.M)
        self.assertIsNotNone(m, "no '250 2.0.0 Ok: queued as <id>' in swaks output:\n" + out)
        return m.group(1).upper(), out

    def test_swaks(self):
        token = h.unique_token("swaks")
        # swaks turns LF into CRLF, dot-stuffs and appends CRLF.CRLF.
        lines = [b"Subject: swaks " + token.encode(), b"", b".dot first", b"..",
                 b"caf\xe9 8-bit", b"W" * 990, b"last " + token.encode()]
        _, out = None, None
        queue_id, out = self.run_swaks(b"\n".join(lines))
        self.check_stored(queue_id, b"\r\n".join(lines) + b"\r\n")

    def test_swaks_pipeline(self):
        token = h.unique_token("swakspipe")
        lines = [b"Subject: pipelined " + token.encode(), b"", b"body " + token.encode()]
        queue_id, out = self.run_swaks(b"\n".join(lines), ["--pipeline"])
        self.assertIn("PIPELINING", out)
        self.check_stored(queue_id, b"\r\n".join(lines) + b"\r\n")

    def test_raw_session_several_messages_and_rset(self):
        with self.ehlo(HELO) as c:
            bodies = []
            ids = []
            for i in range(3):
                body = ("Subject: %d\r\n\r\n%s\r\n" % (i, h.unique_token("raw"))).encode()
                ids.append(h.send_message(self, c, body))
                bodies.append(body)
                self.expect(c, "RSET", 250, "2.0.0")
            # a transaction abandoned by RSET stores nothing
            self.expect(c, "MAIL FROM:<x@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")
            self.expect(c, "RSET", 250, "2.0.0")
            self.expect(c, "QUIT", 221, "2.0.0")
            self.assertTrue(c.is_closed(), "connection stays open after 221")
        self.assertEqual(len(set(ids)), 3, "queue ids repeat: %r" % ids)
        for qid, body in zip(ids, bodies):
            self.check_stored(qid, body, sender="sender@client.example")

    def test_null_reverse_path(self):
        with self.ehlo(HELO) as c:
            self.expect(c, "MAIL FROM:<>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<postmaster@example.com>", 250, "2.1.5")
            self.expect(c, "DATA", 354)
            body = b"Subject: bounce\r\n\r\n" + h.unique_token("null").encode() + b"\r\n"
            payload = h.dot_stuff(body)
            c.send(payload)
            qid = h.queued_id(self, c.reply(), payload)
        entries = {m["id"]: m for m in self.server.ls()}
        self.assertEqual(entries[qid]["from"], "<>")
        _, rest = h.split_received(self.server.show_body(qid))
        self.assertEqual(rest, body)

    def test_empty_body(self):
        with self.ehlo(HELO) as c:
            self.expect(c, "MAIL FROM:<e@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")
            self.expect(c, "DATA", 354)
            c.send(b".\r\n")
            qid = h.queued_id(self, c.reply(), b".\r\n")
        _, rest = h.split_received(self.server.show_body(qid))
        self.assertEqual(rest, b"", "empty message stored as %s" % h.show_bytes(rest))

    def test_zz_stats_and_verify(self):
        # Runs last (alphabetical order): the store holds what the other tests sent.
        with self.ehlo(HELO) as c:
            h.send_message(self, c, b"Subject: stats\r\n\r\nx\r\n")
        n = len(self.server.ls())
        self.assertGreater(n, 0)
        stats = self.server.stats()
        self.assertEqual(stats.get("messages"), str(n), "stats %r vs %d listed" % (stats, n))
        cp = self.server.verify()
        out = cp.stdout.decode("latin-1")
        self.assertEqual(cp.returncode, 0, "verify failed: %s %s" % (out, cp.stderr))
        m = re.search(r"(?m)^ok (\d+) records\s*$", out)
        self.assertIsNotNone(m, "verify printed %r, expected 'ok N records'" % out)
        self.assertGreaterEqual(int(m.group(1)), n, "verify counts fewer records than ls lists")


if __name__ == "__main__":
    unittest.main()
