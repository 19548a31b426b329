#!/usr/bin/env python3
"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA. For every known
end-of-data look-alike, a client sends a message whose body contains the
look-alike followed by a complete second transaction (MAIL, RCPT, DATA,
body, '.'), all in one write. In either bare_newline mode the store must
never hold a second message, and the smuggled envelope must never appear.
reject: look-alikes with a bare CR or LF get 550 5.5.2, close, nothing
stored. normalize: the look-alike is content of the one message.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

VARIANTS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r",
    b"\r.\n",
    b"\n.\r",
    b"\r.\r\n",
    b"\r\n\x00.\r\n",
]

SMUGGLED_SENDER = "smuggler@evil.example"


def has_bare_newline(variant):
    """True if the look-alike, placed after 'body' and before 'MAIL', holds a
    CR not followed by LF or an LF not preceded by CR."""
    s = b"x" + variant + b"M"
    for i, ch in enumerate(s):
        if ch == 0x0D and s[i + 1] != 0x0A:
            return True
        if ch == 0x0A and s[i - 1] != 0x0D:
            return True
    return False


class SmugglingBase:
    mode = None

    def smuggle(self, variant):
        token = h.unique_token("outer")
        smuggled_token = h.unique_token("smuggled")
        before = self.server.ls()
        payload = (b"From: outer@client.example\r\nSubject: outer\r\n\r\n" + token.encode()
                   + variant
                   + b"MAIL FROM:<" + SMUGGLED_SENDER.encode() + b">\r\n"
                   + b"RCPT TO:<victim@example.com>\r\n"
                   + b"DATA\r\n"
                   + b"From: ceo@example.com\r\nSubject: smuggled\r\n\r\n"
                   + smuggled_token.encode() + b"\r\n.\r\n")
        with self.ehlo() as c:
            self.expect(c, "MAIL FROM:<outer@client.example>", 250, "2.1.0")
            self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")
            self.expect(c, "DATA", 354)
            c.send(payload)
            c.settimeout(2.0)
            replies, closed = c.replies_until_close()
            texts = [r.text for r in replies]
            if not closed:
                # the server waits for more: send QUIT and collect the rest
                try:
                    c.settimeout(10.0)
                    c.send(b"QUIT\r\n")
                    more, closed = c.replies_until_close()
                    replies += more
                    texts = [r.text for r in replies]
                except OSError:
                    pass
        what = "variant %r, mode %s, replies %r, client bytes %s" % (
            variant, self.mode, texts, h.show_bytes(payload, 400))
        after = self.server.ls()
        new = [m for m in after if m["id"] not in {b["id"] for b in before}]
        queued = [r for r in replies if h.QUEUED_RE.match(r.lines[-1])]
        self.assertLessEqual(len(queued), 1, "two acknowledgements: " + what)
        self.assertLessEqual(len(new), 1, "a second message was stored: " + what)
        for m in new:
            self.assertNotEqual(m["from"], "<%s>" % SMUGGLED_SENDER, "smuggled envelope "
                                "stored: " + what)
        bodies = [self.server.show_body(m["id"]) for m in new]
        for b in bodies:
            self.assertIn(token.encode(), b, "the stored message is not the outer one: " + what)
        return replies, new, bodies, what, smuggled_token


class SmugglingRejectTest(SmugglingBase, h.ServerTestCase, unittest.TestCase):
    mode = "reject"
    settings = [("bare_newline", "reject")]


class SmugglingNormalizeTest(SmugglingBase, h.ServerTestCase, unittest.TestCase):
    mode = "normalize"
    settings = [("bare_newline", "normalize")]


def _add_variant_tests():
    for i, variant in enumerate(VARIANTS):
        def reject_case(self, variant=variant):
            replies, new, bodies, what, smuggled = self.smuggle(variant)
            if has_bare_newline(variant):
                self.assertTrue(any((r.code, r.enhanced) == (550, "5.5.2") for r in replies),
                                "expected 550 5.5.2: " + what)
                self.assertEqual(new, [], "stored despite a bare CR/LF: " + what)
            else:
                nul_case(self, replies, new, bodies, what, smuggled)

        def nul_case(self, replies, new, bodies, what, smuggled):
            # A NUL in DATA is not bare CR/LF; the contract leaves accepting
            # or refusing it open, but if stored, the rest is content.
            if new:
                self.assertIn(smuggled.encode(), bodies[0], what)
            else:
                self.assertTrue(any(r.code >= 500 for r in replies),
                                "nothing stored and no 5xx: " + what)

        def normalize_case(self, variant=variant):
            replies, new, bodies, what, smuggled = self.smuggle(variant)
            if b"\x00" in variant:
                nul_case(self, replies, new, bodies, what, smuggled)
                return
            self.assertEqual(len(new), 1, "expected exactly one stored message: " + what)
            self.assertIn(smuggled.encode(), bodies[0],
                          "the smuggled transaction is not content of the message: " + what)
            self.assertTrue(replies, "no reply: " + what)
            self.assertEqual(replies[0].code, 250, what)
            h.queued_id(self, replies[0], variant)

        name = "test_variant_%d_%s" % (i, variant.hex())
        setattr(SmugglingRejectTest, name, reject_case)
        setattr(SmugglingNormalizeTest, name, normalize_case)


_add_variant_tests()


if __name__ == "__main__":
    unittest.main()
