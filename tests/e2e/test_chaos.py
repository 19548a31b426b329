#!/usr/bin/env python3
"""Hostile input from a seeded generator: sessions mixing valid commands,
garbage bytes, over-long lines, broken BDAT sizes, bare CR/LF, NULs and
abrupt closes, over many connections at once. Whatever they send, the
gateway must keep serving: afterwards a clean message goes through, the
store verifies, every message acknowledged during the storm is stored,
and a clean SIGTERM exit leaves no sanitizer report.
"""

import os
import random
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

SEED = int(os.environ.get("RINGMX_E2E_SEED", "20261128"))
CONNECTIONS = 120
PIECES_PER_CONNECTION = 30

VALID = [b"EHLO chaos.example\r\n", b"HELO chaos.example\r\n", b"MAIL FROM:<c@client.example>\r\n",
         b"MAIL FROM:<c@client.example> BODY=BINARYMIME\r\n", b"MAIL FROM:<> SIZE=100\r\n",
         b"RCPT TO:<user@example.com>\r\n", b"RCPT TO:<x@elsewhere.example>\r\n", b"DATA\r\n",
         b"RSET\r\n", b"NOOP\r\n", b"VRFY x\r\n", b"HELP\r\n", b".\r\n", b"\r\n.\r\n",
         b"BDAT 10\r\n0123456789", b"BDAT 5 LAST\r\nabcde", b"BDAT 0 LAST\r\n",
         b"Subject: chaos\r\n\r\n", b"QUIT\r\n", b"STARTTLS\r\n", b"AUTH PLAIN AAAA\r\n"]


def piece(rng, tame=False):
    k = rng.random()
    if tame and k < 0.9:
        return rng.choice(VALID)
    if k < 0.70:
        return rng.choice(VALID)
    if k < 0.72:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
    if k < 0.74:
        return b"NOOP " + b"x" * rng.choice((500, 2047, 2048, 2049, 9000, 70000)) + b"\r\n"
    if k < 0.75:
        return b"BDAT " + rng.choice((b"-1", b"99999999999999999999", b"18446744073709551615",
                                      b"1x", b"", b"4294967296", b"3 LAST LAST")) + b"\r\n"
    if k < 0.80:
        return rng.choice((b"\n", b"\r", b"\r\r\n", b"\x00", b"\n.\n", b"\r.\r"))
    if k < 0.85:
        return b"MAIL FROM:<" + bytes(rng.choice(b"a@.<>\"\\%!:[]") for _ in range(
            rng.randint(0, 400))) + b">\r\n"
    if k < 0.90:
        return b"RCPT TO:<" + b"a" * rng.randint(0, 300) + b"@" + b"b" * rng.randint(0, 300) + b">\r\n"
    return b"x" * rng.randint(1, 40000)


def storm(port, seed, acked, lock):
    rng = random.Random(seed)
    try:
        s = socket.create_connection((h.LOOPBACK4, port), timeout=5)
    except OSError:
        return
    interactive = rng.random() < 0.6
    seen = b""
    try:
        s.settimeout(2)
        for _ in range(PIECES_PER_CONNECTION):
            try:
                s.sendall(piece(rng, tame=interactive))
            except OSError:
                break
            if interactive:
                # wait for the reply like a client that does not pipeline
                s.settimeout(0.05)
                try:
                    seen += s.recv(65536)
                except socket.timeout:
                    pass
                except OSError:
                    break
                s.settimeout(2)
            elif rng.random() < 0.3:
                time.sleep(rng.random() * 0.02)
        if rng.random() < 0.3:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            return
        data = b""
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        for line in (seen + data).split(b"\r\n"):
            m = h.QUEUED_RE.match(line)
            if m:
                with lock:
                    acked.append(m.group(1).decode().upper())
    finally:
        s.close()


class ChaosTest(unittest.TestCase):

    def test_connect_reset_storm(self):
        # Clients that connect and reset at once (scanners, load balancer
        # health checks) reach accept with a socket the peer already tore
        # down; the gateway must shrug them off.
        srv = h.Server()
        self.addCleanup(srv.cleanup)
        srv.start()

        def resets(n):
            for _ in range(n):
                s = socket.socket()
                s.settimeout(5)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                try:
                    s.connect((h.LOOPBACK4, srv.port))
                except OSError:
                    pass
                s.close()

        threads = [threading.Thread(target=resets, args=(500,), daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        time.sleep(0.5)
        self.assertTrue(srv.running(), "ringmx died after 4000 connect+RST clients:\n%s"
                        % srv.stderr_text()[-3000:])
        with srv.conn() as c:
            h.send_message(self, c, b"Subject: after resets\r\n\r\nok\r\n", helo="calm.example")
        srv.stop_checked(self)

    def test_storm_then_clean_mail(self):
        srv = h.Server(settings=[("max_connections", "1000"), ("max_message_size", "256k"),
                                 ("idle_timeout", "5s"), ("command_timeout", "5s"),
                                 ("data_timeout", "5s")])
        self.addCleanup(srv.cleanup)
        srv.start()
        acked, lock = [], threading.Lock()
        threads = [threading.Thread(target=storm, args=(srv.port, SEED + i, acked, lock),
                                    daemon=True) for i in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertFalse(any(t.is_alive() for t in threads), "storm clients hang")
        self.assertTrue(srv.running(), "ringmx died during the storm (seed %d):\n%s"
                        % (SEED, srv.stderr_text()[-4000:]))
        with srv.conn() as c:
            qid = h.send_message(self, c, b"Subject: after the storm\r\n\r\ncalm\r\n",
                                 helo="calm.example")
        listed = set(srv.ls_ids())
        self.assertIn(qid, listed)
        missing = [q for q in acked if q not in listed]
        self.assertEqual(missing, [], "acknowledged during the storm but not stored")
        cp = srv.verify()
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        print("chaos: seed %d, %d connections, %d messages acknowledged"
              % (SEED, CONNECTIONS, len(acked)), file=sys.stderr)
        srv.stop_checked(self)


if __name__ == "__main__":
    unittest.main()
