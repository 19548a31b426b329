#!/usr/bin/env python3
"""The end of a session costs the server one segment: after QUIT, the 221
reply and the FIN reach the client together, not as two segments. The client
counts the segments it receives from QUIT to end of input with the kernel's
own counter (TCP_INFO tcpi_segs_in); the whole 221 line arrives before the
end of input. Checked after EHLO alone and after a message, on a few
connections each (loopback only, bounded).
"""

import os
import socket
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

CONNECTIONS = 10
# struct tcp_info (linux/tcp.h): tcpi_segs_in follows tcpi_segs_out at 136.
TCPI_SEGS_IN_OFFSET = 140
TCP_INFO_BYTES = 256


def segs_in(sock):
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
    if len(info) < TCPI_SEGS_IN_OFFSET + 4:
        raise unittest.SkipTest("this kernel's tcp_info has no tcpi_segs_in")
    return struct.unpack_from("I", info, TCPI_SEGS_IN_OFFSET)[0]


class ConnectionEndTest(h.ServerTestCase, unittest.TestCase):
    settings = [("accept_domains", "example.com")]

    def quit_segments(self, c):
        """Sends QUIT on a session whose replies are all read; returns the
        segments received until end of input, and what they carried."""
        before = segs_in(c.sock)
        c.sock.sendall(b"QUIT\r\n")
        got = b""
        while True:
            part = c.sock.recv(512)
            if not part:
                break
            got += part
        return segs_in(c.sock) - before, got

    def check_end(self, with_message):
        for i in range(CONNECTIONS):
            c = self.conn()
            try:
                h.assert_reply(self, c.banner, 220, sent=b"")
                h.assert_reply(self, c.cmd("EHLO client.e2e.example"), 250, sent=c.sent)
                if with_message:
                    h.assert_reply(self, c.cmd("MAIL FROM:<s@client.example>"), 250, sent=c.sent)
                    h.assert_reply(self, c.cmd("RCPT TO:<user@example.com>"), 250, sent=c.sent)
                    h.assert_reply(self, c.cmd("DATA"), 354, sent=c.sent)
                    h.assert_reply(self, c.cmd("Subject: end %d\r\n\r\nbody\r\n." % i), 250,
                                   sent=c.sent)
                segments, got = self.quit_segments(c)
                self.assertTrue(got.startswith(b"221 ") and got.endswith(b"\r\n"),
                                "QUIT answered %r" % got)
                self.assertEqual(segments, 1, "connection %d: the 221 and the FIN came in %d "
                                 "segments, not one" % (i, segments))
            finally:
                c.close()

    def test_quit_after_ehlo(self):
        self.check_end(with_message=False)

    def test_quit_after_message(self):
        self.check_end(with_message=True)


if __name__ == "__main__":
    unittest.main()
