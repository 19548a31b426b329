#!/usr/bin/env python3
"""Input framing over real TCP: a session sent one byte per segment, the
end of data and dot-stuffed lines split at every point, CRLF split across
reads (not a bare CR), a large body in ragged writes across receive-buffer
boundaries, reply bursts larger than the reply buffer (hundreds of
pipelined RCPTs or BDAT chunks), and clients that vanish mid-DATA.
"""

import os
import random
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

HELO = "stream.e2e.example"
GAP_S = 0.03  # long enough for the previous write to arrive on its own


def nodelay(c):
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def send_pieces(c, pieces, gap_s=GAP_S):
    for p in pieces:
        c.send(p)
        time.sleep(gap_s)


class StreamTest(h.ServerTestCase, unittest.TestCase):
    settings = [("max_message_size", "2M"), ("segment_size", "8M")]

    def stored(self, qid):
        received, rest = h.split_received(self.server.show_body(qid))
        h.check_received(self, received, HELO, "127.0.0.1", qid)
        return rest

    def begin_data(self, c, params=""):
        self.expect(c, "MAIL FROM:<s@client.example>" + params, 250, "2.1.0")
        self.expect(c, "RCPT TO:<user@example.com>", 250, "2.1.5")
        self.expect(c, "DATA", 354)

    def test_session_one_byte_per_write(self):
        body = b"Subject: bytes\r\n\r\n.dot\r\n..\r\nplain\r\n"
        with self.conn() as c:
            nodelay(c)
            for line in (b"EHLO " + HELO.encode() + b"\r\n", b"MAIL FROM:<s@client.example>\r\n",
                         b"RCPT TO:<user@example.com>\r\n", b"DATA\r\n"):
                send_pieces(c, [line[i:i + 1] for i in range(len(line))], 0.002)
                r = c.reply()
                self.assertIn(r.code, (250, 354), "%r after %s" % (r.text, h.show_bytes(line)))
            payload = h.dot_stuff(body)
            send_pieces(c, [payload[i:i + 1] for i in range(len(payload))], 0.002)
            qid = h.queued_id(self, c.reply(), payload)
        self.assertEqual(self.stored(qid), body)

    def test_end_of_data_split_everywhere(self):
        body = b"Subject: split\r\n\r\nline\r\n.dotted\r\nlast"
        payload = h.dot_stuff(body)  # ...\r\n..dotted\r\nlast\r\n.\r\n
        with self.conn() as c:
            nodelay(c)
            self.expect(c, "EHLO " + HELO, 250)
            # every split point in the last 20 bytes: the stuffed dot, the
            # final CRLF and the terminator
            for k in range(len(payload) - 20, len(payload)):
                self.begin_data(c)
                send_pieces(c, [payload[:k], payload[k:]])
                qid = h.queued_id(self, c.reply(), payload[:k] + b"|split|" + payload[k:])
                self.assertEqual(self.stored(qid), body + b"\r\n", "split at %d" % k)

    def test_terminator_three_way_split(self):
        payload = b"Subject: three\r\n\r\nbody\r\n.\r\n"
        with self.conn() as c:
            nodelay(c)
            self.expect(c, "EHLO " + HELO, 250)
            self.begin_data(c)
            send_pieces(c, [payload[:-5], b"\r", b"\n", b".", b"\r", b"\n"])
            qid = h.queued_id(self, c.reply(), payload)
        self.assertEqual(self.stored(qid), b"Subject: three\r\n\r\nbody\r\n")

    def test_crlf_split_across_writes_is_not_bare(self):
        # bare_newline = reject is the default; a CR and its LF arriving in
        # different reads are still one CRLF.
        with self.conn() as c:
            nodelay(c)
            self.expect(c, "EHLO " + HELO, 250)
            send_pieces(c, [b"NOOP\r", b"\n"])
            h.assert_reply(self, c.reply(), 250, "2.0.0", sent=b"NOOP\\r | \\n")
            self.begin_data(c)
            body = b"Subject: crlf\r\n\r\nab\r\ncd\r\n"
            send_pieces(c, [b"Subject: crlf\r", b"\n\r", b"\nab\r", b"\ncd\r", b"\n.\r", b"\n"])
            qid = h.queued_id(self, c.reply(), body)
        self.assertEqual(self.stored(qid), body)

    def test_bare_cr_split_across_writes_is_rejected(self):
        with self.conn() as c:
            nodelay(c)
            self.expect(c, "EHLO " + HELO, 250)
            self.begin_data(c)
            send_pieces(c, [b"Subject: x\r\n\r\nab\r", b"cd\r\n.\r\n"])
            replies, closed = c.replies_until_close()
            self.assertTrue(replies and (replies[-1].code, replies[-1].enhanced) == (550, "5.5.2"),
                            "bare CR split from its next byte: %r" % [r.text for r in replies])
            self.assertTrue(closed)

    def test_large_body_ragged_writes(self):
        rng = random.Random(5321)
        lines = []
        size = 0
        i = 0
        while size < 1500000:
            n = rng.choice((0, 1, 2, 77, 500, 997, 998))
            line = bytes(rng.choice(b".abcxyz \t0123456789\xe9") for _ in range(n))
            if i % 5 == 0:
                line = b"." + line[1:] if line else b"."
            lines.append(line)
            size += len(line) + 2
            i += 1
        body = b"Subject: large\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
        payload = h.dot_stuff(body)
        pieces = []
        pos = 0
        while pos < len(payload):
            n = rng.choice((1, 2, 3, 100, 4095, 16383, 16384, 16385, 40000))
            pieces.append(payload[pos:pos + n])
            pos += n
        with self.conn() as c:
            self.expect(c, "EHLO " + HELO, 250)
            self.begin_data(c, " BODY=8BITMIME")
            for p in pieces:
                c.send(p)
            qid = h.queued_id(self, c.reply(), b"(1.5 MB body)")
        self.assertEqual(self.stored(qid), body)

    def test_many_pipelined_recipients(self):
        n = 600
        group = b"MAIL FROM:<s@client.example>\r\n" + b"".join(
            b"RCPT TO:<r%d@example.com>\r\n" % i for i in range(n)) + b"DATA\r\n"
        with self.conn() as c:
            self.expect(c, "EHLO " + HELO, 250)
            c.send(group)
            h.assert_reply(self, c.reply(), 250, "2.1.0", sent=group)
            for i in range(n):
                h.assert_reply(self, c.reply(), 250, "2.1.5",
                               sent=b"(RCPT %d of %d in one write)" % (i + 1, n))
            h.assert_reply(self, c.reply(), 354, sent=group)
            payload = b"Subject: many\r\n\r\nmany\r\n.\r\n"
            c.send(payload)
            qid = h.queued_id(self, c.reply(), payload)
        entry = [m for m in self.server.ls() if m["id"] == qid][0]
        self.assertEqual(entry["to"], ",".join("<r%d@example.com>" % i for i in range(n)))

    def test_many_pipelined_bdat_chunks(self):
        n = 400
        chunks = [b"chunk %03d\r\n" % i for i in range(n)]
        burst = (b"MAIL FROM:<s@client.example>\r\nRCPT TO:<user@example.com>\r\n"
                 + b"".join(b"BDAT %d\r\n" % len(x) + x for x in chunks) + b"BDAT 0 LAST\r\n")
        with self.conn() as c:
            self.expect(c, "EHLO " + HELO, 250)
            c.send(burst)
            h.assert_reply(self, c.reply(), 250, "2.1.0", sent=burst)
            h.assert_reply(self, c.reply(), 250, "2.1.5", sent=burst)
            for i in range(n):
                h.assert_reply(self, c.reply(), 250, "2.0.0",
                               sent=b"(BDAT chunk %d of %d in one write)" % (i + 1, n))
            qid = h.queued_id(self, c.reply(), burst)
        self.assertEqual(self.stored(qid), b"".join(chunks))

    def test_client_vanishes_mid_data(self):
        before = len(self.server.ls())
        for how in ("close", "reset"):
            c = self.conn()
            self.expect(c, "EHLO " + HELO, 250)
            self.begin_data(c)
            c.send(b"Subject: gone\r\n\r\n" + b"g" * 50000)
            if how == "reset":
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        time.sleep(0.3)
        with self.conn() as c:
            self.expect(c, "EHLO " + HELO, 250)
            h.send_message(self, c, b"Subject: after\r\n\r\nafter\r\n")
        self.assertEqual(len(self.server.ls()), before + 1)

    def test_last_command_then_half_close(self):
        # A client may send its last command and shut down its sending side
        # (nc -N, scripted clients); the reply must still arrive. Repeated,
        # since the failure depends on timing.
        failures = []
        for i in range(30):
            for last, code in ((b"QUIT\r\n", 221), (b"NOOP\r\n", 250), (b"RSET\r\n", 250)):
                with self.conn() as c:
                    self.expect(c, "EHLO " + HELO, 250)
                    c.send(last)
                    c.sock.shutdown(socket.SHUT_WR)
                    try:
                        r = c.reply()
                        if r.code != code:
                            failures.append((last, r.text))
                    except h.Closed:
                        failures.append((last, "closed without a reply"))
        self.assertEqual(failures, [], "%d of 90 sessions lost the reply to their last "
                         "command before FIN, e.g. %r" % (len(failures), failures[:3]))

if __name__ == "__main__":
    unittest.main()
