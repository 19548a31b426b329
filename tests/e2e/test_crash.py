#!/usr/bin/env python3
"""Durability: '250 queued as ID' means on disk. Client threads send
continuously while the gateway is killed with SIGKILL; every queue id that
was acknowledged before the kill must, after a restart on the same
data_dir, be listed, show its own unique body, and verify must pass.
Repeated for a few rounds on the same store, so recovery also runs over
the tails that earlier kills tore.
"""

import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

CLIENTS = 8
ROUNDS = 3
LOAD_S = 3.0
SAMPLE = 150


def sender_loop(port, index, stop, acked, lock):
    """Sends messages until stop is set or the connection dies; records
    (queue_id, body) for every 250 received."""
    seq = 0
    while not stop.is_set():
        try:
            with h.SmtpConn(port, timeout=10) as c:
                if c.cmd("EHLO crash%d.example" % index).code != 250:
                    return
                while not stop.is_set():
                    token = "crash-%d-%d-%s" % (index, seq, os.urandom(8).hex())
                    seq += 1
                    body = ("Subject: %s\r\n\r\n%s\r\n%s\r\n"
                            % (token, token, "k" * (seq * 37 % 3000))).encode()
                    c.send(b"MAIL FROM:<c@crash.example>\r\nRCPT TO:<user@example.com>\r\n"
                           b"DATA\r\n")
                    rs = [c.reply() for _ in range(3)]
                    if [r.code for r in rs] != [250, 250, 354]:
                        return
                    c.send(h.dot_stuff(body))
                    r = c.reply()
                    m = h.QUEUED_RE.match(r.lines[-1])
                    if m:
                        with lock:
                            acked.append((m.group(1).decode().upper(), body))
        except (OSError, h.Closed, AssertionError, ValueError):
            # the server died under us; reconnecting fails until stop
            time.sleep(0.05)


class CrashTest(unittest.TestCase):

    def test_kill9_under_load(self):
        srv = h.Server(settings=[("segment_size", "1M"), ("max_message_size", "256k")])
        self.addCleanup(srv.cleanup)
        all_acked = []
        for rnd in range(ROUNDS):
            srv.start()
            stop = threading.Event()
            lock = threading.Lock()
            acked = []
            threads = [threading.Thread(target=sender_loop,
                                        args=(srv.port, i, stop, acked, lock), daemon=True)
                       for i in range(CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(LOAD_S)
            srv.kill9()
            self.assertEqual(srv.exit_status, -signal.SIGKILL)
            stop.set()
            for t in threads:
                t.join(timeout=30)
            self.assertFalse(any(t.is_alive() for t in threads), "client threads hang")
            with lock:
                got = list(acked)
            self.assertGreater(len(got), 0, "round %d: nothing acknowledged in %.0fs"
                               % (rnd, LOAD_S))
            all_acked.extend(got)
            print("crash round %d: %d acknowledged before SIGKILL" % (rnd, len(got)),
                  file=sys.stderr)

            # recovery: restart on the same data_dir
            srv.start()
            listed = set(srv.ls_ids())
            missing = [q for q, _ in all_acked if q not in listed]
            self.assertEqual(missing, [], "round %d: %d acknowledged messages lost, e.g. %s"
                             % (rnd, len(missing), missing[:5]))
            cp = srv.verify()
            self.assertEqual(cp.returncode, 0, "verify after restart: %r %r"
                             % (cp.stdout, cp.stderr))
            # the restarted server accepts mail
            with srv.conn() as c:
                qid = h.send_message(self, c, b"Subject: after restart\r\n\r\nok\r\n",
                                     helo="after.example")
            self.assertIn(qid, set(srv.ls_ids()))
            srv.stop_checked(self)

        ids = [q for q, _ in all_acked]
        self.assertEqual(len(set(ids)), len(ids), "a queue id was acknowledged twice")

        # every acknowledged body exactly once in the segments (the token is
        # in the Subject: and in the body), and a sample byte-exact through
        # show --body (one show per message is too slow under the sanitizers)
        srv.start()
        segments = srv.segment_bytes()
        for qid, body in all_acked:
            token = body.split(b"\r\n", 1)[0][len(b"Subject: "):]
            n = segments.count(token)
            self.assertEqual(n, 2, "%s: token %r found %d times (expected 2)" % (qid, token, n))
        sample = all_acked[::max(1, len(all_acked) // SAMPLE)] + all_acked[-20:]
        for qid, body in sample:
            _, rest = h.split_received(srv.show_body(qid))
            self.assertEqual(rest, body, "message %s differs after recovery" % qid)
        srv.stop_checked(self)

if __name__ == "__main__":
    unittest.main()
