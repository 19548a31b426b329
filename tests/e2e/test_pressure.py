#!/usr/bin/env python3
"""Back-pressure and bounds under concurrency: a client that writes a long
pipelined burst while replies pile up, many concurrent bodies against a
small max_inflight_data_bytes (refusals are 4.3.1, everything acknowledged
is stored), and SIGTERM while many clients are mid-transaction (exit 0,
every acknowledged message stored, no 250 for anything not stored).
"""

import os
import socket
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402


class PressureTest(unittest.TestCase):

    def start(self, settings=(), workers=2):
        srv = h.Server(settings=list(settings), workers=workers)
        self.addCleanup(srv.cleanup)
        srv.start()
        return srv

    def test_pipelined_burst_while_replies_pile_up(self):
        # 40,000 pipelinable commands (RSET, MAIL, RCPT) in one stream; the
        # writer never waits, the reader drains replies concurrently.
        srv = self.start()
        n = 10000
        unit = (b"RSET\r\nMAIL FROM:<b@client.example>\r\nRCPT TO:<user@example.com>\r\n"
                b"RCPT TO:<other@example.com>\r\n")
        # (only accepted commands: refusals count toward the bad-command limit)
        expected = [(250, "2.0.0"), (250, "2.1.0"), (250, "2.1.5"), (250, "2.1.5")]
        c = srv.conn(timeout=60)
        self.addCleanup(c.close)
        h.assert_reply(self, c.cmd("EHLO burst.example"), 250)
        werr = []

        def writer():
            try:
                for _ in range(n // 100):
                    c.sock.sendall(unit * 100)
            except OSError as e:
                werr.append(e)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        got = 0
        for i in range(n * len(expected)):
            try:
                r = c.reply()
            except (h.Closed, OSError) as e:
                # DESIGN rule 7: past a bound the client gets a proper
                # 4xx/5xx with an enhanced code, never a silent close.
                self.fail("connection closed without a reply after %d of %d replies to a "
                          "pipelined burst of %d bytes (%s)" % (got, n * 4, len(unit) * n, e))
            want = expected[i % len(expected)]
            if r.code >= 400 and r.code != want[0]:
                # an input bound was reached: acceptable only as a reply
                # that says so, followed by a close
                self.assertIsNotNone(r.enhanced, r.text)
                self.assertTrue(c.is_closed(), "no close after %r" % r.text)
                print("burst: refused after %d replies with %r" % (got, r.text), file=sys.stderr)
                break
            self.assertEqual((r.code, r.enhanced), want, "reply %d: %r" % (i, r.text))
            got += 1
        else:
            h.assert_reply(self, c.cmd("RSET"), 250, "2.0.0")
        t.join(timeout=30)
        self.assertFalse(t.is_alive())
        c.close()
        srv.stop_checked(self)

    def test_inflight_data_bound(self):
        # the largest message must fit the bound (config check), so 60k of 64k
        srv = self.start([("max_inflight_data_bytes", "64k"), ("max_message_size", "60k")],
                         workers=1)
        results, errors = [], []
        body = b"Subject: inflight\r\n\r\n" + (b"i" * 78 + b"\r\n") * 600  # ~48 KB

        def one(i):
            try:
                with srv.conn(timeout=30) as c:
                    if c.banner.code != 220:
                        # the in-flight data's overload watermark refuses
                        # new connections
                        results.append(("connect", c.banner.code, c.banner.enhanced, None))
                        return
                    c.cmd("EHLO inflight.example")
                    c.cmd("MAIL FROM:<s@client.example>")
                    c.cmd("RCPT TO:<user@example.com>")
                    r = c.cmd("DATA")
                    if r.code != 354:
                        results.append(("data", r.code, r.enhanced, None))
                        return
                    token = h.unique_token("inflight%d" % i).encode()
                    payload = h.dot_stuff(body + token + b"\r\n")
                    half = len(payload) // 2
                    c.send(payload[:half])
                    time.sleep(0.3)  # hold the body open while the others start
                    c.send(payload[half:])
                    r = c.reply()
                    m = h.QUEUED_RE.match(r.lines[-1])
                    results.append(("end", r.code, r.enhanced,
                                    (m.group(1).decode().upper(), token) if m else None))
            except Exception as e:
                errors.append("%d: %s: %s" % (i, type(e).__name__, e))

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 12)
        acked = [r[3] for r in results if r[3]]
        refused = [r for r in results if not r[3]]
        for r in refused:
            allowed = ((421, "4.3.2"),) if r[0] == "connect" else ((451, "4.3.1"), (452, "4.3.1"))
            self.assertIn((r[1], r[2]), allowed, "refusal under the in-flight bound: %r" % (r,))
        self.assertGreater(len(acked), 0, "nothing accepted: %r" % results)
        listed = set(srv.ls_ids())
        for qid, token in acked:
            self.assertIn(qid, listed)
            self.assertIn(token, srv.show_body(qid))
        self.assertEqual(len(listed), len(acked), "stored messages that were not acknowledged")
        # with the others gone, a message goes through: the in-flight data
        # may have put the worker into overload (overload_inflight_hard), which
        # answers new connections 421 4.3.2 until its next check sees the
        # bodies gone (every OVERLOAD_CHECK_MS)
        deadline = time.monotonic() + 5
        while True:
            c = h.SmtpConn(srv.port, read_banner=False)
            banner = c.reply()
            if banner.code == 220:
                break
            c.close()
            self.assertEqual((banner.code, banner.enhanced), (421, "4.3.2"), banner.text)
            self.assertLess(time.monotonic(), deadline, "still overloaded after the bodies left")
            time.sleep(0.1)
        with c:
            h.send_message(self, c, body, helo="after.example")
        print("inflight: %d accepted, %d refused with 4.3.1" % (len(acked), len(refused)),
              file=sys.stderr)
        srv.stop_checked(self)

    def test_sigterm_under_load(self):
        mport = h.free_port()
        srv = self.start([("shutdown_grace", "5s"), ("metrics_listen", "127.0.0.1:%d" % mport)])
        stop = threading.Event()
        lock = threading.Lock()
        acked, odd = [], []

        def sender(i):
            seq = 0
            try:
                with srv.conn(timeout=20) as c:
                    c.cmd("EHLO term%d.example" % i)
                    while not stop.is_set():
                        seq += 1
                        token = ("term-%d-%d-%s" % (i, seq, os.urandom(6).hex())).encode()
                        r = c.cmd("MAIL FROM:<t@client.example>")
                        if r.code != 250:
                            if r.code != 421:
                                odd.append(r.text)
                            return
                        c.cmd("RCPT TO:<user@example.com>")
                        r = c.cmd("DATA")
                        if r.code != 354:
                            if r.code != 421:
                                odd.append(r.text)
                            return
                        c.send(h.dot_stuff(b"Subject: " + token + b"\r\n\r\n" + token + b"\r\n"))
                        r = c.reply()
                        m = h.QUEUED_RE.match(r.lines[-1])
                        if m:
                            with lock:
                                acked.append((m.group(1).decode().upper(), token))
                        elif r.code != 421:
                            odd.append(r.text)
            except (h.Closed, OSError):
                pass

        # /readyz as a load balancer sees it, every 10 ms: (time, status)
        ready = []

        def poll_readyz():
            while not stop.is_set():
                try:
                    s = socket.create_connection((h.LOOPBACK4, mport), timeout=2)
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                    head = s.recv(64)
                    s.close()
                    code = int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else -1
                except OSError:
                    code = None  # the listener is gone
                ready.append((time.monotonic(), code))
                time.sleep(0.01)

        threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(20)]
        poller = threading.Thread(target=poll_readyz, daemon=True)
        for t in threads:
            t.start()
        poller.start()
        time.sleep(1.5)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        status = srv.wait_exit(20)
        elapsed = time.monotonic() - t0
        stop.set()
        for t in threads:
            t.join(timeout=30)
        poller.join(timeout=10)
        # ready before the signal; after it, 503 before anything else (the
        # listener closing) and never 200 again
        before = [c for t, c in ready if t < t0]
        after = [c for t, c in ready if t >= t0]
        self.assertTrue(before and all(c == 200 for c in before), before[-5:])
        self.assertTrue(after, "no /readyz poll after SIGTERM")
        first = next((c for c in after if c != 200), "none")
        self.assertEqual(first, 503, "after SIGTERM /readyz went %r first: %r" % (first, after[:20]))
        flipped = after.index(503)
        self.assertNotIn(200, after[flipped:], "readyz said 200 again during the drain")
        self.assertEqual(status, 0, "exit status %r %.1fs after SIGTERM under load; stderr:\n%s"
                         % (status, elapsed, srv.stderr_text()[-2000:]))
        self.assertLess(elapsed, 5 + 5)
        srv.check_stderr(self)
        self.assertEqual(odd, [], "unexpected replies during shutdown")
        self.assertGreater(len(acked), 0)
        listed = set(srv.ls_ids())
        missing = [q for q, _ in acked if q not in listed]
        self.assertEqual(missing, [], "acknowledged before SIGTERM but not stored")
        cp = srv.verify()
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        print("sigterm under load: %d acknowledged, exit after %.1fs" % (len(acked), elapsed),
              file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
