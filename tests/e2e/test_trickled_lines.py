#!/usr/bin/env python3
"""Command lines that arrive in many small reads: the longest legal line
(max_command_line = 8192) sent a byte per segment is answered as if it came
whole, one byte more is 500 5.5.2 and the session goes on, pipelined
commands trickled a byte at a time each get their reply, and a bare CR or
a control byte seen in an early read still counts when the line ends reads
later. The server keeps its place in a partial line between reads; these
check that it resumes in the right place through the real receive path.
Each test sends at most a few tens of KiB on loopback and ends by itself.
"""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

LINE_MAX = 8192
# A pause every this many bytes, so that the server sees many separate reads
# without the test taking long (8 KiB in about 1 s).
PAUSE_EVERY_BYTES = 8
PAUSE_S = 0.001


def trickle(c, data):
    """Sends data one byte per send() with Nagle off, pausing now and then."""
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(data)):
        c.send(data[i:i + 1])
        if i % PAUSE_EVERY_BYTES == PAUSE_EVERY_BYTES - 1:
            time.sleep(PAUSE_S)


class TrickledLinesTest(h.ServerTestCase, unittest.TestCase):
    settings = [("max_command_line", str(LINE_MAX))]

    def test_longest_line_byte_by_byte(self):
        line = b"NOOP " + b"n" * (LINE_MAX - 7) + b"\r\n"
        self.assertEqual(len(line), LINE_MAX)
        with self.ehlo() as c:
            trickle(c, line)
            h.assert_reply(self, c.reply(), 250, "2.0.0", sent=b"NOOP ...")
            self.expect(c, "NOOP", 250, "2.0.0")

    def test_one_byte_over_the_bound(self):
        line = b"NOOP " + b"n" * (LINE_MAX - 6) + b"\r\n"
        with self.ehlo() as c:
            trickle(c, line)
            h.assert_reply(self, c.reply(), 500, "5.5.2", sent=b"NOOP ...")
            self.expect(c, "NOOP", 250, "2.0.0")
            h.send_message(self, c, b"Subject: after a trickled long line\r\n\r\nhere\r\n")

    def test_pipelined_commands_trickled(self):
        with self.ehlo() as c:
            trickle(c, b"MAIL FROM:<a@client.example>\r\nRCPT TO:<user@example.com>\r\n"
                       b"RCPT TO:<nobody@elsewhere.example>\r\n")
            h.assert_reply(self, c.reply(), 250, "2.1.0", sent=c.sent)
            h.assert_reply(self, c.reply(), 250, "2.1.5", sent=c.sent)
            h.assert_reply(self, c.reply(), 554, "5.7.1", sent=c.sent)
            self.expect(c, "RSET", 250, "2.0.0")

    def test_control_byte_early_in_a_trickled_line(self):
        with self.ehlo() as c:
            trickle(c, b"NOOP a\x01" + b"b" * 2000 + b"\r\n")
            h.assert_reply(self, c.reply(), 500, "5.5.2", sent=c.sent)
            self.expect(c, "NOOP", 250, "2.0.0")

    def test_bare_cr_in_one_read_line_end_in_a_later_one(self):
        with self.ehlo() as c:
            c.send(b"NOOP \r")
            time.sleep(0.2)  # the server reads the CR alone
            c.send(b"x")
            time.sleep(0.2)
            c.send(b"\r\n")
            replies, closed = c.replies_until_close()
            self.assertTrue(replies and (replies[-1].code, replies[-1].enhanced) == (550, "5.5.2"),
                            "expected 550 5.5.2, got %r" % [r.text for r in replies])
            self.assertTrue(closed, "connection open after 550 5.5.2")

    def test_cr_and_lf_in_separate_reads_end_the_line(self):
        with self.ehlo() as c:
            c.send(b"NOOP\r")
            time.sleep(0.2)
            c.send(b"\n")
            h.assert_reply(self, c.reply(), 250, "2.0.0", sent=c.sent)


if __name__ == "__main__":
    unittest.main()
