#!/usr/bin/env python3
"""The command dialogue, byte by byte over raw sockets: every reply code and
enhanced status code the gateway promises, EHLO extensions, RFC 2920
pipelining (legal groups and violations), SMTPUTF8, and the bare CR/LF
policy for commands and DATA in both bare_newline modes.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

HELO = "client.e2e.example"
MAX_SIZE = 1000000


class CommandsTest(h.ServerTestCase, unittest.TestCase):
    settings = [("max_message_size", str(MAX_SIZE))]

    def test_banner(self):
        with self.conn() as c:
            self.assertEqual(len(c.banner.lines), 1, c.banner.text)
            self.assertTrue(c.banner.text.startswith("220 %s ESMTP ringmx" % h.HOSTNAME),
                            "banner %r" % c.banner.text)

    def test_ehlo_extensions(self):
        with self.conn() as c:
            r = c.cmd("EHLO " + HELO)
            h.assert_reply(self, r, 250, sent=c.sent)
            self.assertTrue(r.lines[0].startswith(b"250-" + h.HOSTNAME.encode()),
                            "EHLO greeting line %r" % r.lines[0])
            kw = h.ehlo_keywords(r)
            for ext in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8",
                        "CHUNKING", "BINARYMIME", "SIZE"):
                self.assertIn(ext, kw, "EHLO does not advertise %s: %r" % (ext, r.text))
            self.assertEqual(kw["SIZE"], [str(MAX_SIZE)], "SIZE parameter: %r" % r.text)
            self.assertNotIn("STARTTLS", kw, r.text)
            self.assertNotIn("AUTH", kw, r.text)

    def test_helo(self):
        with self.conn() as c:
            r = c.cmd("HELO " + HELO)
            h.assert_reply(self, r, 250, sent=c.sent)
            self.assertEqual(len(r.lines), 1, "HELO reply lists extensions: %r" % r.text)

    def test_ehlo_twice_is_allowed(self):
        with self.ehlo() as c:
            self.expect(c, "EHLO " + HELO, 250)
            self.expect(c, "MAIL FROM:<a@client.example>", 250, "2.1.0")
            # a new EHLO resets the transaction (RFC 5321 4.1.4)
            self.expect(c, "EHLO " + HELO, 250)
            self.expect(c, "RCPT TO:<user@example.com>", 503, "5.5.1")

    def test_starttls_and_auth_not_offered(self):
        with self.ehlo() as c:
            self.expect(c, "STARTTLS", 502, "5.5.1")
            self.expect(c, "AUTH PLAIN AGZvbwBiYXI=", 502, "5.5.1")
            self.expect(c, "AUTH LOGIN", 502, "5.5.1")
            self.expect(c, "NOOP", 250, "2.0.0")

    def test_vrfy_help_noop_quit(self):
        with self.ehlo() as c:
            r = self.expect(c, "VRFY user", 252)
            self.assertTrue(r.enhanced and r.enhanced.startswith("2."),
                            "VRFY reply without a 2.x.x enhanced code: %r" % r.text)
            r = self.expect(c, "HELP", 214)
            self.assertTrue(r.enhanced and r.enhanced.startswith("2."),
                            "HELP reply without a 2.x.x enhanced code: %r" % r.text)
            self.expect(c, "NOOP", 250, "2.0.0")
            self.expect(c, "noop with an argument", 250, "2.0.0")
            self.expect(c, "RSET", 250, "2.0.0")
            r = self.expect(c, "QUIT", 221)
            self.assertTrue(r.enhanced and r.enhanced.startswith("2."),
                            "QUIT reply without a 2.x.x enhanced code: %r" % r.text)
            self.assertTrue(c.is_closed(), "connection open after 221")

    def test_unknown_verb(self):
        with self.ehlo() as c:
            self.expect(c, "FOOB bar", 500, "5.5.2")
            self.expect(c, "X", 500, "5.5.2")
            self.expect(c, "NOOP", 250, "2.0.0")

    def test_verbs_not_implemented(self):
        with self.ehlo() as c:
            self.expect(c, "EXPN staff", 502, "5.5.1")
            self.expect(c, "TURN", 502, "5.5.1")
            self.expect(c, "ETRN example.com", 502, "5.5.1")
            self.expect(c, "NOOP", 250, "2.0.0")

    def test_sequence_errors(self):
        with self.conn() as c:
            self.expect(c, "MAIL FROM:<a@client.example>", 503, "5.5.1")
            self.expect(c, "RCPT TO:<user@example.com>", 503, "5.5.1")
            self.expect(c, "DATA", 503, "5.5.1")
        with self.ehlo() as c:
            self.expect(c, "RCPT TO:<user@example.com>", 503, "5.5.1")
            self.expect(c, "DATA", 503, "5.5.1")
            self.expect(c, "MAIL FROM:<a@client.example>", 250, "2.1.0")
            self.expect(c, "MAIL FROM:<a@client.example>", 503, "5.5.1")
            self.expect(c, "DATA", 503, "5.5.1")
            self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")
            self.expect(c, "DATA", 354)
            payload = b"Subject: seq\r\n\r\nok\r\n.\r\n"
            c.send(payload)
            h.queued_id(self, c.reply(), payload)
            # the transaction is over: RCPT needs a new MAIL
            self.expect(c, "RCPT TO:<user@example.com>", 503, "5.5.1")

    def test_unknown_parameters(self):
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<a@client.example> FOO=BAR", 555, "5.5.4")
            self.expect(c, "MAIL FROM:<a@client.example> XYZZY", 555, "5.5.4")
            self.expect(c, "MAIL FROM:<a@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<user@example.com> FOO=1", 555, "5.5.4")
            self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")

    def test_known_parameters(self):
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<a@client.example> BODY=8BITMIME SIZE=1000", 250, "2.1.0")
            self.expect(c, "RSET", 250, "2.0.0")
            self.expect(c, "MAIL FROM:<a@client.example> BODY=7BIT", 250, "2.1.0")

    def test_size_parameter(self):
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<a@client.example> SIZE=%d" % (MAX_SIZE + 1), 552, "5.3.4")
            self.expect(c, "MAIL FROM:<a@client.example> SIZE=99999999999999", 552, "5.3.4")
            self.expect(c, "MAIL FROM:<a@client.example> SIZE=%d" % MAX_SIZE, 250, "2.1.0")

    def test_non_ascii_without_smtputf8(self):
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<j\u00f6rg@client.example>", 553, "5.6.7")
            self.expect(c, "MAIL FROM:<a@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<j\u00f6rg@example.com>", 553, "5.6.7")
            self.expect(c, "RCPT TO:<user@b\u00fccher.example.com>", 553, "5.6.7")

    def test_smtputf8_message(self):
        token = h.unique_token("utf8")
        body = ("Subject: gr\u00fc\u00dfe\r\nFrom: j\u00f6rg@client.example\r\n\r\n"
                "\u00fcml\u00e4ut \u2603 %s\r\n" % token).encode("utf-8")
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<j\u00f6rg@client.example> SMTPUTF8 BODY=8BITMIME",
                        250, "2.1.0")
            self.expect(c, "RCPT TO:<j\u00f6rg@example.com>", 250, "2.1.5")
            self.expect(c, "DATA", 354)
            payload = h.dot_stuff(body)
            c.send(payload)
            qid = h.queued_id(self, c.reply(), payload)
        received, rest = h.split_received(self.server.show_body(qid))
        self.assertEqual(rest, body)
        h.check_received(self, received, HELO, "127.0.0.1", qid, proto="UTF8SMTP")
        entry = [m for m in self.server.ls() if m["id"] == qid]
        self.assertEqual(len(entry), 1)
        self.assertEqual(entry[0]["from"], "<j\u00f6rg@client.example>")

    def test_control_bytes_in_command(self):
        with self.ehlo() as c:
            self.expect(c, b"NOOP \x00x", 500, "5.5.2")
        with self.ehlo() as c:
            self.expect(c, b"MAIL FROM:<a\x01b@client.example>", 500, "5.5.2")
        with self.ehlo() as c:
            self.expect(c, b"\x00", 500, "5.5.2")
        with self.ehlo() as c:
            self.expect(c, b"RSET\x7f", 500, "5.5.2")

    def test_long_command_line_session_survives(self):
        with self.ehlo() as c:
            self.expect(c, b"NOOP " + b"x" * 5000, 500, "5.5.2")
            self.expect(c, "NOOP", 250, "2.0.0")
            self.expect(c, b"MAIL FROM:<" + b"a" * 100000 + b"@client.example>", 500, "5.5.2")
            self.expect(c, "NOOP", 250, "2.0.0")
            h.send_message(self, c, b"Subject: after long lines\r\n\r\nstill here\r\n")

    def test_pipelined_group(self):
        token = h.unique_token("pipe")
        with self.ehlo() as c:
            group = (b"MAIL FROM:<p@client.example>\r\nRCPT TO:<a@example.com>\r\n"
                     b"RCPT TO:<b@example.com>\r\nDATA\r\n")
            c.send(group)
            h.assert_reply(self, c.reply(), 250, "2.1.0", sent=group)
            h.assert_reply(self, c.reply(), 250, "2.1.5", sent=group)
            h.assert_reply(self, c.reply(), 250, "2.1.5", sent=group)
            h.assert_reply(self, c.reply(), 354, sent=group)
            body = ("Subject: pipelined\r\n\r\n%s\r\n" % token).encode()
            c.send(h.dot_stuff(body))
            qid = h.queued_id(self, c.reply(), group)
            # RSET, MAIL, RCPT and DATA again, still one write; a refused
            # recipient in the middle of the group does not break it
            group = (b"RSET\r\nMAIL FROM:<p@client.example>\r\nRCPT TO:<x@elsewhere.example>\r\n"
                     b"RCPT TO:<c@example.com>\r\nDATA\r\n")
            c.send(group)
            h.assert_reply(self, c.reply(), 250, "2.0.0", sent=group)
            h.assert_reply(self, c.reply(), 250, "2.1.0", sent=group)
            h.assert_reply(self, c.reply(), 554, "5.7.1", sent=group)
            h.assert_reply(self, c.reply(), 250, "2.1.5", sent=group)
            h.assert_reply(self, c.reply(), 354, sent=group)
            c.send(h.dot_stuff(body))
            qid2 = h.queued_id(self, c.reply(), group)
        entries = {m["id"]: m for m in self.server.ls()}
        self.assertEqual(entries[qid]["to"], "<a@example.com>,<b@example.com>")
        self.assertEqual(entries[qid2]["to"], "<c@example.com>")
        _, rest = h.split_received(self.server.show_body(qid))
        self.assertEqual(rest, body)

    def test_pipelining_after_end_of_data(self):
        # RFC 2920 3.1: message content may be the first "command" of a
        # group, so the next transaction may follow the final dot at once.
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<p@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")
            self.expect(c, "DATA", 354)
            burst = (b"Subject: first\r\n\r\none\r\n.\r\n"
                     b"MAIL FROM:<p@client.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n")
            c.send(burst)
            q1 = h.queued_id(self, c.reply(), burst)
            h.assert_reply(self, c.reply(), 250, "2.1.0", sent=burst)
            h.assert_reply(self, c.reply(), 250, "2.1.5", sent=burst)
            h.assert_reply(self, c.reply(), 354, sent=burst)
            burst = b"Subject: second\r\n\r\ntwo\r\n.\r\nQUIT\r\n"
            c.send(burst)
            q2 = h.queued_id(self, c.reply(), burst)
            h.assert_reply(self, c.reply(), 221, "2.0.0", sent=burst)
            self.assertTrue(c.is_closed())
        self.assertEqual(h.split_received(self.server.show_body(q1))[1],
                         b"Subject: first\r\n\r\none\r\n")
        self.assertEqual(h.split_received(self.server.show_body(q2))[1],
                         b"Subject: second\r\n\r\ntwo\r\n")

    def pipelining_violation(self, setup, burst, forbidden_enhanced=()):
        """setup: commands sent one at a time first; burst: one write that
        puts bytes after a group-ending command. Expects 554 5.5.0 and close;
        no reply in forbidden_enhanced may come before it."""
        before = len(self.server.ls())
        with self.conn() as c:
            for line in setup:
                r = c.cmd(line)
                self.assertLess(r.code, 400, "setup %r: %r" % (line, r.text))
            c.send(burst)
            replies, closed = c.replies_until_close()
            texts = [r.text for r in replies]
            self.assertTrue(replies, "no reply to %s" % h.show_bytes(burst))
            last = replies[-1]
            self.assertEqual((last.code, last.enhanced), (554, "5.5.0"),
                             "expected 554 5.5.0 after %s, got replies %r"
                             % (h.show_bytes(burst), texts))
            self.assertTrue(closed, "connection still open after 554 5.5.0 (burst %s)"
                            % h.show_bytes(burst))
            for r in replies:
                self.assertNotIn(r.enhanced, forbidden_enhanced,
                                 "command after a group end was executed: %r (burst %s)"
                                 % (texts, h.show_bytes(burst)))
        self.assertEqual(len(self.server.ls()), before, "a message was stored")

    def test_pipelining_violation_after_ehlo(self):
        self.pipelining_violation([], b"EHLO x.example\r\nMAIL FROM:<a@client.example>\r\n",
                                  ("2.1.0",))

    def test_pipelining_violation_after_noop(self):
        self.pipelining_violation(["EHLO x.example"],
                                  b"NOOP\r\nMAIL FROM:<a@client.example>\r\n", ("2.1.0",))

    def test_pipelining_violation_after_vrfy(self):
        self.pipelining_violation(["EHLO x.example"],
                                  b"VRFY user\r\nMAIL FROM:<a@client.example>\r\n", ("2.1.0",))

    def test_pipelining_violation_after_data(self):
        self.pipelining_violation(
            ["EHLO x.example"],
            b"MAIL FROM:<a@client.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n"
            b"Subject: early\r\n\r\nbody sent before 354\r\n.\r\n", ("2.0.0",))

    def test_pipelining_after_helo(self):
        self.pipelining_violation(["HELO x.example"],
                                  b"MAIL FROM:<a@client.example>\r\nRCPT TO:<user@example.com>\r\n",
                                  ("2.1.5",))

    def test_pipelining_violation_helo_burst(self):
        self.pipelining_violation([], b"HELO x.example\r\nMAIL FROM:<a@client.example>\r\n",
                                  ("2.1.0",))


class BareNewlineRejectTest(h.ServerTestCase, unittest.TestCase):
    """bare_newline = reject (the default): 550 5.5.2 and close, nothing stored."""

    def rejected(self, setup, burst):
        before = len(self.server.ls())
        with self.conn() as c:
            for line in setup:
                r = c.cmd(line)
                self.assertLess(r.code, 400, "setup %r: %r" % (line, r.text))
            c.send(burst)
            replies, closed = c.replies_until_close()
            texts = [r.text for r in replies]
            self.assertTrue(replies and (replies[-1].code, replies[-1].enhanced) == (550, "5.5.2"),
                            "expected 550 5.5.2 for %s, got %r" % (h.show_bytes(burst), texts))
            self.assertTrue(closed, "connection open after 550 5.5.2 (sent %s)"
                            % h.show_bytes(burst))
            self.assertFalse(any(h.QUEUED_RE.match(r.lines[-1]) for r in replies),
                             "message acknowledged: %r" % texts)
        self.assertEqual(len(self.server.ls()), before, "a message was stored")

    def test_bare_lf_in_command(self):
        self.rejected(["EHLO x.example"], b"NOOP\n")

    def test_bare_lf_in_mail_command(self):
        self.rejected(["EHLO x.example"], b"MAIL FROM:<a@client.example>\n")

    def test_bare_cr_in_command(self):
        self.rejected(["EHLO x.example"], b"NOOP\rNOOP\r\n")

    def test_bare_lf_in_data(self):
        self.rejected(["EHLO x.example", "MAIL FROM:<a@client.example>",
                       "RCPT TO:<user@example.com>", "DATA"],
                      b"Subject: bare lf\n\nbody\r\n.\r\n")

    def test_bare_cr_in_data(self):
        self.rejected(["EHLO x.example", "MAIL FROM:<a@client.example>",
                       "RCPT TO:<user@example.com>", "DATA"],
                      b"Subject: bare cr\r\n\r\nbo\rdy\r\n.\r\n")

    def test_crlf_data_is_fine(self):
        with self.ehlo() as c:
            h.send_message(self, c, b"Subject: clean\r\n\r\nclean body\r\n")


class BareNewlineNormalizeTest(h.ServerTestCase, unittest.TestCase):
    """bare_newline = normalize: bare CR/LF in DATA are content."""
    settings = [("bare_newline", "normalize")]

    def test_bare_lf_and_cr_are_content(self):
        token = h.unique_token("norm")
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<a@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")
            self.expect(c, "DATA", 354)
            payload = ("Subject: bare\n\nline one\nline\rtwo %s\r\n.\r\n" % token).encode()
            c.send(payload)
            qid = h.queued_id(self, c.reply(), payload)
            self.expect(c, "NOOP", 250, "2.0.0")
        _, rest = h.split_received(self.server.show_body(qid))
        self.assertIn(token.encode(), rest)
        self.assertIn(b"line one", rest)
        self.assertTrue(rest.endswith(token.encode() + b"\r\n"), h.show_bytes(rest))


if __name__ == "__main__":
    unittest.main()
