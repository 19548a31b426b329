#!/usr/bin/env python3
"""Concurrency: 200 client connections at once, 20 messages each, every
message with a unique token. Every one must be acknowledged with a distinct
queue id, listed by ringmx-store with its envelope, its token must occur
exactly once in the store, a sample must come back byte-exact through
show --body, and verify must pass.
"""

import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

CONNECTIONS = 200
MESSAGES_PER_CONNECTION = 20
DEADLINE_S = 240
SAMPLE = 150


def client(port, index, results, errors, start_barrier):
    """One connection sending MESSAGES_PER_CONNECTION messages; appends
    (queue_id, sender, recipient, body) to results, text to errors."""
    try:
        start_barrier.wait(timeout=60)
        with h.SmtpConn(port, timeout=60) as c:
            if c.banner.code != 220:
                errors.append("conn %d: banner %r" % (index, c.banner.text))
                return
            r = c.cmd("EHLO load%d.example" % index)
            if r.code != 250:
                errors.append("conn %d: EHLO %r" % (index, r.text))
                return
            for m in range(MESSAGES_PER_CONNECTION):
                token = "load-%d-%d-%s" % (index, m, os.urandom(8).hex())
                sender = "c%d@load.example" % index
                rcpt = "u%d.%d@example.com" % (index, m)
                body = ("From: <%s>\r\nSubject: %s\r\n\r\n%s\r\n.dot line\r\n%s\r\n"
                        % (sender, token, token, "p" * (index * 7 % 900))).encode()
                # MAIL, RCPT and DATA as one pipelined group (RFC 2920)
                c.send(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                       % (sender.encode(), rcpt.encode()))
                codes = [c.reply() for _ in range(3)]
                if [x.code for x in codes] != [250, 250, 354]:
                    errors.append("conn %d msg %d: %r" % (index, m, [x.text for x in codes]))
                    return
                c.send(h.dot_stuff(body))
                r = c.reply()
                mo = h.QUEUED_RE.match(r.lines[-1])
                if not mo:
                    errors.append("conn %d msg %d: end of data %r" % (index, m, r.text))
                    return
                results.append((mo.group(1).decode().upper(), sender, rcpt, body, token))
            c.cmd("QUIT")
    except Exception as e:  # reported by the main thread
        errors.append("conn %d: %s: %s" % (index, type(e).__name__, e))


class LoadTest(unittest.TestCase):

    def test_200_connections_x_20_messages(self):
        srv = h.Server(settings=[("max_connections", "1000")])
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop_checked, self)

        results, errors = [], []
        barrier = threading.Barrier(CONNECTIONS)
        threads = [threading.Thread(target=client, args=(srv.port, i, results, errors, barrier),
                                    daemon=True) for i in range(CONNECTIONS)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        # the store tool works on a store that is being written
        live_runs = 0
        while any(t.is_alive() for t in threads) and live_runs < 5:
            for args in (("ls",), ("verify",), ("stats",)):
                cp = srv.store(*args)
                self.assertEqual(cp.returncode, 0, "ringmx-store %s during load: %r %r"
                                 % (args[0], cp.stdout[-500:], cp.stderr[-500:]))
                self.assertNotIn(b"Sanitizer", cp.stderr)
            live_runs += 1
        for t in threads:
            t.join(timeout=max(1.0, DEADLINE_S - (time.monotonic() - t0)))
        elapsed = time.monotonic() - t0
        alive = sum(t.is_alive() for t in threads)
        self.assertEqual(alive, 0, "%d client threads still running after %.0fs"
                         % (alive, elapsed))
        self.assertEqual(errors, [], "%d client errors, first: %s"
                         % (len(errors), errors[:5]))
        total = CONNECTIONS * MESSAGES_PER_CONNECTION
        self.assertEqual(len(results), total)
        print("load: %d messages over %d connections in %.1fs (%.0f msgs/s)"
              % (total, CONNECTIONS, elapsed, total / elapsed), file=sys.stderr)

        ids = [r[0] for r in results]
        self.assertEqual(len(set(ids)), total, "queue ids repeat")

        listed = {m["id"]: m for m in srv.ls()}
        for qid, sender, rcpt, _, _ in results:
            self.assertIn(qid, listed, "acknowledged %s not listed" % qid)
            self.assertEqual(listed[qid]["from"], "<%s>" % sender)
            self.assertEqual(listed[qid]["to"], "<%s>" % rcpt)
        self.assertEqual(len(listed), total, "ls lists more messages than were sent")

        stats = srv.stats()
        self.assertEqual(stats.get("messages"), str(total), "stats: %r" % stats)
        cp = srv.verify()
        self.assertEqual(cp.returncode, 0, "verify: %r %r" % (cp.stdout, cp.stderr))

        # Each token exactly once in the segments (one show per message
        # would take minutes under the sanitizers).
        segments = srv.segment_bytes()
        for _, _, _, _, token in results:
            n = segments.count(token.encode())
            # the token is in the Subject: and in the body
            self.assertEqual(n, 2, "token %s found %d times in the store (expected 2)"
                             % (token, n))

        rng = random.Random(20261128)
        for qid, _, _, body, _ in rng.sample(results, SAMPLE):
            _, rest = h.split_received(srv.show_body(qid))
            self.assertEqual(rest, body, "message %s differs" % qid)


if __name__ == "__main__":
    unittest.main()
