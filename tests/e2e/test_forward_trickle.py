#!/usr/bin/env python3
"""An upstream relay that trickles its replies cannot hold a forwarder
connection past upstream_timeout: the deadline moves with whole replies, not
with every byte (the same rule as for SMTP clients, test_resource_attacks).

The relay here is scripted on purpose (no real relay trickles): it greets,
then sends the EHLO reply one byte every 0.4 s and never finishes it.
"""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

TRICKLE_FOR_S = 20.0      # the relay gives up on its own after this
UPSTREAM_TIMEOUT_S = 2


class TricklingRelay(up.ScriptedRelay):
    """Each connection gets a greeting, then an EHLO reply trickled a byte
    at a time. Records how long each connection lasted."""

    def __init__(self):
        super().__init__(conn_timeout_s=TRICKLE_FOR_S)
        self.lasted = []      # seconds from the EHLO to the close, per connection

    def session(self, conn):
        with conn:
            conn.sendall(b"220 trickle.example ESMTP\r\n")
            got = b""
            while b"\r\n" not in got:
                data = conn.recv(512)
                if not data:
                    return
                got += data
            t0 = time.monotonic()
            text = b"250-trickle.example says hello and takes its time about it"
            conn.setblocking(True)
            for i in range(int(TRICKLE_FOR_S / 0.4)):
                if self.stopping.is_set():
                    return
                try:
                    conn.sendall(text[i % len(text):i % len(text) + 1])
                except OSError:
                    break
                # a closed connection shows as readable with no data
                conn.settimeout(0.4)
                try:
                    if conn.recv(512) == b"":
                        break
                except socket.timeout:
                    pass
                except OSError:
                    break
            self.lasted.append(time.monotonic() - t0)


class ForwardTrickleTest(unittest.TestCase):

    def test_trickled_reply_times_out(self):
        relay = TricklingRelay().start()
        self.addCleanup(relay.stop)
        srv = h.Server(settings=up.forward_settings(
            [relay.port], retry_min="60s", retry_max="60s",
            extra=[("upstream_timeout", "%ds" % UPSTREAM_TIMEOUT_S),
                   ("upstream_connections", "1")]), workers=1)
        self.addCleanup(srv.cleanup)
        srv.start()
        with srv.conn() as c:
            h.send_message(self, c, b"Subject: trickle\r\n\r\nhello\r\n", helo="t.example")
        deadline = time.monotonic() + TRICKLE_FOR_S + 10
        while not relay.lasted and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertTrue(relay.lasted, "the relay saw no connection end")
        lasted = relay.lasted[0]
        print("trickling relay: connection closed %.1f s after EHLO (upstream_timeout %d s)"
              % (lasted, UPSTREAM_TIMEOUT_S), file=sys.stderr)
        self.assertLess(lasted, UPSTREAM_TIMEOUT_S + 2.5,
                        "a trickled reply held the connection past upstream_timeout")
        self.assertIn("event=upstream_timeout", srv.stderr_text())
        srv.stop_checked(self)


if __name__ == "__main__":
    unittest.main()
