#!/usr/bin/env python3
"""CHUNKING (RFC 3030): BDAT in one or many chunks, pipelined BDAT, chunk
bytes that look like commands or like an end of data, BINARYMIME, and the
sequence rules (BDAT without a transaction, DATA after BDAT, BINARYMIME with
DATA), and the size bound (a chunk that would take the message past
max_message_size is refused before it is read, and the connection closed).
Every accepted message must come back byte-exact from ringmx-store.
"""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

HELO = "client.e2e.example"


class BdatTest(h.ServerTestCase, unittest.TestCase):
    settings = [("max_message_size", "200000")]

    def begin(self, c, body_param=""):
        self.expect(c, "MAIL FROM:<b@client.example>" + body_param, 250, "2.1.0")
        self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")

    def chunk(self, c, data, last=False):
        head = b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"")
        c.send(head + data)
        return c.reply()

    def stored_body(self, qid):
        received, rest = h.split_received(self.server.show_body(qid))
        h.check_received(self, received, HELO, "127.0.0.1", qid)
        return rest

    def test_single_chunk(self):
        body = b"Subject: bdat one\r\n\r\n" + h.unique_token("bdat1").encode() + b"\r\n"
        with self.ehlo(HELO) as c:
            self.begin(c)
            qid = h.queued_id(self, self.chunk(c, body, last=True), body)
        self.assertEqual(self.stored_body(qid), body)

    def test_many_chunks_and_empty_last(self):
        body = (b"Subject: bdat many\r\n\r\n" + b"".join(
            b"line %d %s\r\n" % (i, b"z" * (i % 70)) for i in range(400)))
        parts = [body[:1], body[1:100], body[100:5000], body[5000:]]
        with self.ehlo(HELO) as c:
            self.begin(c)
            for p in parts:
                r = self.chunk(c, p)
                h.assert_reply(self, r, 250, "2.0.0", sent=c.sent[-200:])
            qid = h.queued_id(self, self.chunk(c, b"", last=True), b"BDAT 0 LAST")
        self.assertEqual(self.stored_body(qid), body)

    def test_chunk_bytes_are_not_commands(self):
        # Commands, a lone dot and a fake end of data inside a chunk are content;
        # BDAT input is dot-stuffed on the way in and unstuffed on display.
        body = (b"Subject: tricky\r\n\r\nQUIT\r\n.\r\nRSET\r\n..double\r\n"
                b".\r\nMAIL FROM:<evil@evil.example>\r\nRCPT TO:<v@example.com>\r\nDATA\r\n"
                b"\r\n.\r\n")
        with self.ehlo(HELO) as c:
            self.begin(c)
            r = self.chunk(c, b"QUIT\r\n")
            h.assert_reply(self, r, 250, "2.0.0", sent=c.sent)
            qid = h.queued_id(self, self.chunk(c, body, last=True), body)
            self.expect(c, "NOOP", 250, "2.0.0")
        self.assertEqual(self.stored_body(qid), b"QUIT\r\n" + body)
        self.assertFalse(any(m["from"] == "<evil@evil.example>" for m in self.server.ls()))

    def test_chunk_without_final_crlf_then_more(self):
        # A chunk boundary may split a line, even CR from LF.
        body = b"Subject: split\r\n\r\nab\r\n.cd\r\nef\r\n"
        cut = body.index(b"\r\n.cd") + 1
        with self.ehlo(HELO) as c:
            self.begin(c)
            h.assert_reply(self, self.chunk(c, body[:cut]), 250, "2.0.0", sent=c.sent)
            qid = h.queued_id(self, self.chunk(c, body[cut:], last=True), body)
        self.assertEqual(self.stored_body(qid), body)

    def test_pipelined_bdat(self):
        token = h.unique_token("bdatpipe").encode()
        a = b"Subject: pipelined bdat\r\n\r\n"
        b = token + b"\r\nQUIT\r\n"
        burst = (b"MAIL FROM:<b@client.example>\r\nRCPT TO:<user@example.com>\r\n"
                 + b"BDAT %d\r\n" % len(a) + a + b"BDAT %d LAST\r\n" % len(b) + b
                 + b"MAIL FROM:<b2@client.example>\r\nRCPT TO:<user@example.com>\r\n"
                 + b"BDAT %d LAST\r\n" % len(a + b) + a + b)
        with self.ehlo(HELO) as c:
            c.send(burst)
            h.assert_reply(self, c.reply(), 250, "2.1.0", sent=burst)
            h.assert_reply(self, c.reply(), 250, "2.1.5", sent=burst)
            h.assert_reply(self, c.reply(), 250, "2.0.0", sent=burst)
            qid1 = h.queued_id(self, c.reply(), burst)
            h.assert_reply(self, c.reply(), 250, "2.1.0", sent=burst)
            h.assert_reply(self, c.reply(), 250, "2.1.5", sent=burst)
            qid2 = h.queued_id(self, c.reply(), burst)
            self.expect(c, "QUIT", 221)
        self.assertNotEqual(qid1, qid2)
        self.assertEqual(self.stored_body(qid1), a + b)
        self.assertEqual(self.stored_body(qid2), a + b)

    def test_binarymime(self):
        body = b"Subject: binary\r\nContent-Type: application/octet-stream\r\n\r\n" + \
            bytes(range(256)) * 4 + b"\n.\n\r.\r\x00.\r\n" + b"\r\n.\r\n" + b"tail"
        with self.ehlo(HELO) as c:
            self.begin(c, " BODY=BINARYMIME")
            h.assert_reply(self, self.chunk(c, body[:300]), 250, "2.0.0", sent=c.sent)
            qid = h.queued_id(self, self.chunk(c, body[300:], last=True), body)
        self.assertEqual(self.stored_body(qid), body)

    def test_binarymime_with_data_is_refused(self):
        with self.ehlo(HELO) as c:
            self.begin(c, " BODY=BINARYMIME")
            self.expect(c, "DATA", 503, "5.5.1")
            # the transaction is still usable with BDAT
            body = b"Subject: bin\r\n\r\nx\r\n"
            qid = h.queued_id(self, self.chunk(c, body, last=True), body)
        self.assertEqual(self.stored_body(qid), body)

    def test_bdat_without_transaction(self):
        with self.ehlo(HELO) as c:
            r = self.chunk(c, b"QUIT\r\n", last=True)
            h.assert_reply(self, r, 503, "5.5.1", sent=c.sent)
            # the chunk was read as data, not as a QUIT command
            self.expect(c, "NOOP", 250, "2.0.0")
            self.expect(c, "MAIL FROM:<b@client.example>", 250, "2.1.0")
            r = self.chunk(c, b"RSET\r\n")
            h.assert_reply(self, r, 503, "5.5.1", sent=c.sent)
            self.expect(c, "NOOP", 250, "2.0.0")

    def test_data_after_bdat_is_refused(self):
        with self.ehlo(HELO) as c:
            self.begin(c)
            h.assert_reply(self, self.chunk(c, b"Subject: x\r\n\r\n"), 250, "2.0.0", sent=c.sent)
            self.expect(c, "DATA", 503, "5.5.1")

    def test_bdat_over_size_limit(self):
        # RFC 3030 bounds the message: the 150 kB already taken count, so the
        # LAST chunk of 100 kB is refused on its command line, before its
        # bytes are read (552, close), though the client sent them behind it.
        before = len(self.server.ls())
        with self.ehlo(HELO) as c:
            self.begin(c)
            r = self.chunk(c, b"Subject: big\r\n\r\n" + b"y" * 150000)
            h.assert_reply(self, r, 250, "2.0.0", sent=c.sent[-200:])
            c.settimeout(5.0)
            r = self.chunk(c, b"y" * 100000, last=True)
            h.assert_reply(self, r, 552, "5.3.4", sent=c.sent[-200:])
            self.assertTrue(c.is_closed(wait_s=5.0), "the session goes on after 552")
        self.assertEqual(len(self.server.ls()), before)

    def test_bdat_count_past_limit_closes_at_once(self):
        # BDAT 2^63: answered 552 and closed within a second, not read.
        before = len(self.server.ls())
        with self.ehlo(HELO) as c:
            self.begin(c)
            c.settimeout(2.0)
            start = time.monotonic()
            head = b"BDAT 9223372036854775808 LAST\r\n"
            c.send(head + b"z" * 65536)
            try:
                r = c.reply()
            except socket.timeout:
                self.fail("no reply to %r within 2 s: the chunk is being read" % head)
            h.assert_reply(self, r, 552, "5.3.4", sent=head)
            self.assertTrue(c.is_closed(wait_s=1.0), "the connection stays open")
            self.assertLess(time.monotonic() - start, 1.0)
        self.assertEqual(len(self.server.ls()), before)

if __name__ == "__main__":
    unittest.main()
