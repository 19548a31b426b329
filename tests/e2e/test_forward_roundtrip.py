#!/usr/bin/env python3
"""Forwarding is byte-exact: what a client sent (after dot-unstuffing),
preceded by the gateway's Received: header, is what a real upstream
(Postfix smtp-sink) received, for lines that start with dots, 8-bit
bodies under BODY=8BITMIME, BDAT input in several chunks, lines of 990
and 998 octets, many recipients, a body of headers only, and bodies
from 3 to 5 KiB (around the size sent with the final dot in one send). The
envelope arrives unchanged, each message exactly once, and each delivery
is logged as result=delivered.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

HELO = "roundtrip.client.example"
SENDER = "sender@client.example"
DELIVERY_TIMEOUT_S = 40.0


def body_with(token, text):
    return b"Subject: " + token.encode() + b"\r\nX-Test: roundtrip\r\n\r\n" + text


class ForwardRoundTrip(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        up.require_root()
        cls.sink = up.Sink()
        try:
            cls.sink.start()
            cls.server = h.Server(settings=up.forward_settings([cls.sink.port]))
            cls.server.start()
        except BaseException:
            cls.sink.cleanup()
            if getattr(cls, "server", None) is not None:
                cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            h.stop_and_check(cls.server)
        finally:
            cls.sink.cleanup()

    # ---- helpers

    def data_message(self, body, rcpts=("user@" + h.DOMAIN,), mail_param=""):
        with self.server.conn() as c:
            h.assert_reply(self, c.cmd("EHLO " + HELO), 250, sent=c.sent)
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

    def bdat_message(self, chunks, rcpts=("user@" + h.DOMAIN,)):
        with self.server.conn() as c:
            h.assert_reply(self, c.cmd("EHLO " + HELO), 250, sent=c.sent)
            h.assert_reply(self, c.cmd("MAIL FROM:<%s>" % SENDER), 250, "2.1.0", sent=c.sent)
            for r in rcpts:
                h.assert_reply(self, c.cmd("RCPT TO:<%s>" % r), 250, "2.1.5", sent=c.sent)
            for i, chunk in enumerate(chunks):
                last = i == len(chunks) - 1
                c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
                r = c.reply()
                if last:
                    qid = h.queued_id(self, r, chunk)
                else:
                    h.assert_reply(self, r, 250, "2.0.0", sent=c.sent[-200:])
            c.cmd("QUIT")
        return qid

    def delivered(self, token, count=1):
        """Waits for count dumps carrying token; returns them."""
        key = token.encode()

        def find():
            got = [d for d in self.sink.dumps() if key in d.message]
            return got if len(got) >= count else None

        got = up.wait_for(find, DELIVERY_TIMEOUT_S)
        if not got:
            self.fail("message %s not delivered to smtp-sink within %.0fs; sink dumps: %r; "
                      "gateway log tail:\n%s" % (token, DELIVERY_TIMEOUT_S, self.sink.dumps(),
                                                 self.server.stderr_text()[-3000:]))
        return got

    def check_roundtrip(self, qid, token, body, rcpts=("user@" + h.DOMAIN,),
                        proto="ESMTP"):
        dumps = self.delivered(token)
        # settle: a duplicate would arrive right behind the first copy
        up.wait_for(lambda: False, 0.5)
        dumps = [d for d in self.sink.dumps() if token.encode() in d.message]
        self.assertEqual(len(dumps), 1, "message %s delivered %d times: %r"
                         % (qid, len(dumps), dumps))
        d = dumps[0]
        self.assertEqual(d.sender, SENDER, d)
        self.assertEqual(d.rcpt_addrs, list(rcpts), d)
        header, rest = h.split_received(d.message)
        h.check_received(self, header, HELO, "127.0.0.1", qid, proto=proto)
        if rest != body:
            self.fail("upstream got a different message for %s:\n sent     %s\n received %s"
                      % (qid, h.show_bytes(body, 600), h.show_bytes(rest, 600)))
        logged = [e for e in up.log_events(self.server, "delivery")
                  if e.get("id", "").upper() == qid]
        self.assertEqual(sorted(e.get("rcpt") for e in logged), sorted(rcpts),
                         "event=delivery lines for %s: %r" % (qid, logged))
        self.assertTrue(all(e.get("result") == "delivered" for e in logged), logged)
        return d

    # ---- tests

    def test_dot_leading_lines(self):
        token = h.unique_token("dots")
        body = body_with(token, b".hidden\r\n..two\r\n.\r\n...\r\n . space\r\nmid.dle.\r\n"
                         b".\r\n\r\n.end\r\n")
        qid = self.data_message(body)
        self.check_roundtrip(qid, token, body)

    def test_8bit_body(self):
        token = h.unique_token("8bit")
        high = bytes(range(0x80, 0x100))
        body = body_with(token, b"Content-Type: text/plain; charset=latin1\r\n\r\n" + high
                         + b"\r\n\xc3\xa9t\xc3\xa9 caf\xc3\xa9\r\n\x01\x02\x1b[0m\x7f\r\n"
                         b".\xff\xfe\r\n")
        qid = self.data_message(body, mail_param=" BODY=8BITMIME")
        d = self.check_roundtrip(qid, token, body)
        self.assertIn("BODY=8BITMIME", d.mail_args.upper(),
                      "an 8BITMIME message must be relayed with BODY=8BITMIME: %r" % d)

    def test_bdat_chunks(self):
        token = h.unique_token("bdat")
        body = body_with(token, b".leading dot in a chunk\r\nQUIT\r\n.\r\n" + b"".join(
            b"line %04d %s\r\n" % (i, b"b" * (i % 90)) for i in range(300)) + b"..\r\nend\r\n")
        cuts = [0, 7, body.index(b"\r\n.\r\n") + 1, body.index(b"\r\n.\r\n") + 2, 4000,
                len(body)]
        chunks = [body[a:b] for a, b in zip(cuts, cuts[1:])]
        qid = self.bdat_message(chunks)
        self.check_roundtrip(qid, token, body)

    def test_bdat_without_final_crlf(self):
        # BDAT may end a message without CRLF; DATA cannot carry that, so
        # the relayed message gains exactly one CRLF (and nothing else)
        token = h.unique_token("bdatnoeol")
        body = body_with(token, b"first\r\n.second\r\nno line end")
        qid = self.bdat_message([body[:20], body[20:]])
        self.check_roundtrip(qid, token, body + b"\r\n")

    def test_null_reverse_path(self):
        # a bounce arriving at the MX is relayed with MAIL FROM:<>
        token = h.unique_token("nullsender")
        body = body_with(token, b"a delivery report\r\n")
        with self.server.conn() as c:
            h.assert_reply(self, c.cmd("EHLO " + HELO), 250, sent=c.sent)
            h.assert_reply(self, c.cmd("MAIL FROM:<>"), 250, "2.1.0", sent=c.sent)
            h.assert_reply(self, c.cmd("RCPT TO:<user@%s>" % h.DOMAIN), 250, "2.1.5",
                           sent=c.sent)
            h.assert_reply(self, c.cmd("DATA"), 354, sent=c.sent)
            payload = h.dot_stuff(body)
            c.send(payload)
            qid = h.queued_id(self, c.reply(), payload)
        d, = self.delivered(token)
        self.assertEqual(d.mail_args.split()[0], "<>", d)
        header, rest = h.split_received(d.message)
        h.check_received(self, header, HELO, "127.0.0.1", qid)
        self.assertEqual(rest, body)

    def test_long_lines(self):
        token = h.unique_token("long")
        body = body_with(token, b"x" * 990 + b"\r\n" + b"." + b"y" * 989 + b"\r\n"
                         + b"z" * 998 + b"\r\n" + b"." * 998 + b"\r\nshort\r\n")
        qid = self.data_message(body)
        self.check_roundtrip(qid, token, body)

    def test_many_recipients(self):
        token = h.unique_token("rcpts")
        rcpts = ["r%02d@%s" % (i, h.DOMAIN) for i in range(25)]
        body = body_with(token, b"to many\r\n")
        qid = self.data_message(body, rcpts=rcpts)
        self.check_roundtrip(qid, token, body, rcpts=rcpts)

    def test_headers_only(self):
        token = h.unique_token("hdronly")
        body = b"Subject: " + token.encode() + b"\r\n"
        qid = self.data_message(body)
        self.check_roundtrip(qid, token, body)

    def test_large_body(self):
        token = h.unique_token("large")
        line = b"0123456789abcdef" * 4 + b"\r\n"
        body = body_with(token, line * (600000 // len(line)) + b".\r\n")
        qid = self.data_message(body)
        self.check_roundtrip(qid, token, body)

    def test_bodies_around_one_send(self):
        # A stored body that fits the command buffer goes out with the
        # final dot in one send, a larger one from the record buffer: sizes
        # from 3 to 5 KiB cross that line (the Received: header adds a few
        # hundred bytes) at odd steps, with a dot-leading last line.
        sent = []
        for size in range(3000, 5200, 97):
            token = h.unique_token("edge%d" % size)
            head = body_with(token, b"")
            filler = (b"x" * 70 + b"\r\n") * (size // 72)
            pad = b"y" * max(0, size - len(head) - len(filler) - 6)
            body = head + filler + pad + b"\r\n.z\r\n"
            sent.append((self.data_message(body), token, body))
        for qid, token, body in sent:
            self.check_roundtrip(qid, token, body)


if __name__ == "__main__":
    unittest.main()
