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
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

TRICKLE_FOR_S = 20.0      # the relay gives up on its own after this
UPSTREAM_TIMEOUT_S = 2


class TricklingRelay:
    """Accepts connections; each gets a greeting, then an EHLO reply
    trickled a byte at a time. Records how long each connection lasted."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((h.LOOPBACK4, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.lasted = []      # seconds from the EHLO to the close, per connection
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.one, args=(conn,), daemon=True).start()

    def one(self, conn):
        with conn:
            conn.settimeout(TRICKLE_FOR_S)
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
                if self.stop.is_set():
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

    def close(self):
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=5)


class ForwardTrickleTest(unittest.TestCase):

    def test_trickled_reply_times_out(self):
        relay = TricklingRelay()
        self.addCleanup(relay.close)
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
