#!/usr/bin/env python3
"""Fewer workers after a restart strands no mail (DESIGN.md "Storage").

Mail accepted by a gateway with 2 workers and no upstream lies in shards w0
and w1. Restarted with workers = 1 and an upstream (Postfix smtp-sink), the
one worker adopts the leftover shard w1: every message of both shards
reaches the sink exactly once, w1's segments are reclaimed, its directory
is removed, and nothing new is written to it.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

DELIVERY_TIMEOUT_S = 45.0
MESSAGES_PER_SOURCE = 3
SOURCES_MAX = 40


def segments_by_shard(data_dir):
    """{shard name: [segment file names]} for the w<N> directories."""
    out = {}
    for name in sorted(os.listdir(data_dir)):
        path = os.path.join(data_dir, name)
        if name.startswith("w") and os.path.isdir(path):
            out[name] = sorted(f for f in os.listdir(path) if f.endswith(".seg"))
    return out


def shard_of(queue_id):
    """The shard a queue id names: its top byte (the worker that stored it)."""
    return int(queue_id[:2], 16)


class ForwardShrink(unittest.TestCase):

    def setUp(self):
        up.require_root()

    def fill_two_shards(self, srv):
        """Sends from different source addresses until both workers hold
        mail (the kernel spreads connections over the workers' listeners by
        a hash of the client's address and port). Returns {token: qid}."""
        sent = {}
        for n in range(SOURCES_MAX):
            c = up.SourceConn(srv.port, "127.0.%d.%d" % (n // 200 + 10, n % 200 + 1))
            try:
                h.assert_reply(self, c.cmd("EHLO shrink.client.example"), 250)
                for i in range(MESSAGES_PER_SOURCE):
                    token = h.unique_token("shrink%d-%d" % (n, i))
                    body = (b"Subject: " + token.encode() + b"\r\n\r\n" + token.encode()
                            + b"\r\n")
                    sent[token] = h.send_message(self, c, body,
                                                 rcpts=("u%d@%s" % (i, h.DOMAIN),))
                c.cmd("QUIT")
            finally:
                c.close()
            if len({shard_of(q) for q in sent.values()}) == 2:
                return sent
        self.fail("after %d connections one worker holds no message" % SOURCES_MAX)

    def test_leftover_shard_forwarded_and_removed(self):
        # 1. Two workers, no upstream: mail stays in both shards.
        first = h.Server(workers=2, settings=[("segment_size", "2M"),
                                              ("max_message_size", "1M")])
        self.addCleanup(first.cleanup)
        first.start()
        sent = self.fill_two_shards(first)
        self.assertEqual(set(sent.values()) - set(first.ls_ids()), set())
        before = segments_by_shard(first.data_dir)
        self.assertTrue(before.get("w0") and before.get("w1"), before)
        first.stop_checked(self)

        # 2. One worker, forwarding: w1 is adopted, drained and removed.
        sink = up.Sink()
        self.addCleanup(sink.cleanup)
        sink.start()
        second = h.Server(workers=1, settings=up.forward_settings([sink.port]) +
                          [("data_dir", first.data_dir)])
        self.addCleanup(second.cleanup)
        second.start()
        adopted = up.log_events(second, "shard_adopted")
        self.assertEqual([e.get("shard") for e in adopted], ["w1"], second.stderr_text())

        def all_there():
            got = sink.subjects()
            return all(t in got for t in sent)

        if not up.wait_for(all_there, DELIVERY_TIMEOUT_S, 0.2):
            got = sink.subjects()
            missing = [t for t in sent if t not in got]
            self.fail("%d of %d messages not delivered; log tail:\n%s"
                      % (len(missing), len(sent), second.stderr_text()[-3000:]))
        time.sleep(1.0)  # a duplicate would show up now
        got = sink.subjects()
        twice = [t for t in sent if got.get(t, 0) != 1]
        self.assertEqual(twice, [], "delivered more than once")

        def w1_emptied():
            return not segments_by_shard(first.data_dir).get("w1")

        self.assertTrue(up.wait_for(w1_emptied, 20.0, 0.2),
                        "w1 still holds %r" % segments_by_shard(first.data_dir))
        self.assertTrue([e for e in up.log_events(second, "segment_reclaimed")
                         if e.get("shard") == "w1"], second.stderr_text()[-3000:])
        # Mail accepted now goes to w0 only.
        with second.conn() as c:
            h.assert_reply(self, c.cmd("EHLO shrink.client.example"), 250)
            token = h.unique_token("after")
            qid = h.send_message(self, c, b"Subject: " + token.encode() + b"\r\n\r\nx\r\n")
            c.cmd("QUIT")
        self.assertEqual(shard_of(qid), 0, qid)
        self.assertTrue(up.wait_for(lambda: token in sink.subjects(), 20.0, 0.2))
        second.stop_checked(self)

        # 3. The next start finds w1 empty and removes it.
        self.assertEqual(segments_by_shard(first.data_dir).get("w1"), [])
        second.start()
        self.assertEqual([e.get("shard") for e in up.log_events(second, "shard_removed")],
                         ["w1"], second.stderr_text()[-3000:])
        self.assertFalse(os.path.isdir(os.path.join(first.data_dir, "w1")))
        second.stop_checked(self)


if __name__ == "__main__":
    unittest.main()
