#!/usr/bin/env python3
"""The store drains once everything is delivered: with 2 MiB segments and
about 12 MiB of mail forwarded to Postfix smtp-sink, each worker fills and
seals several segments; when every recipient in a sealed segment is final
the segment and its delivery log are deleted (event=segment_reclaimed).
Checked through the files, ringmx-store stats/ls/verify, and a restart
that must not deliver anything again.
"""

import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

CONNECTIONS = 8
PER_CONNECTION = 15
BODY_BYTES = 100 * 1024
DELIVERY_TIMEOUT_S = 60.0
SEG_RE = re.compile(r"^(\d+)\.seg$")


def segment_files(data_dir):
    """{worker: set(seq)} of the .seg files present."""
    out = {}
    for name in os.listdir(data_dir):
        m = re.match(r"^w(\d+)$", name)
        if not m:
            continue
        seqs = set()
        for f in os.listdir(os.path.join(data_dir, name)):
            s = SEG_RE.match(f)
            if s:
                seqs.add(int(s.group(1)))
        out[int(m.group(1))] = seqs
    return out


def queue_id_parts(queue_id):
    """(worker, segment seq) of a queue id: worker in the top 8 bits, the
    segment in the next 24, the offset in the low 32."""
    v = int(queue_id, 16)
    return v >> 56, (v >> 32) & 0xFFFFFF


class ForwardDrain(unittest.TestCase):

    def setUp(self):
        up.require_root()

    def send_all(self, srv):
        tokens = []
        lock = threading.Lock()
        errors = []

        def run(index):
            try:
                with srv.conn() as c:
                    h.assert_reply(self, c.cmd("EHLO drain%d.example" % index), 250,
                                   sent=c.sent)
                    for i in range(PER_CONNECTION):
                        token = h.unique_token("drain%d-%d" % (index, i))
                        line = (token + " ").encode() * 4 + b"\r\n"
                        body = (b"Subject: " + token.encode() + b"\r\n\r\n"
                                + line * (BODY_BYTES // len(line)))
                        h.send_message(self, c, body)
                        with lock:
                            tokens.append(token)
                    c.cmd("QUIT")
            except Exception as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i,), daemon=True)
                   for i in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertFalse(any(t.is_alive() for t in threads), "client threads hang")
        self.assertEqual(errors, [])
        return tokens

    def delivered_tokens(self, sink):
        out = {}
        for d in sink.dumps():
            m = re.search(rb"^Subject: (\S+)\r$", d.message, re.M)
            if m:
                t = m.group(1).decode()
                out[t] = out.get(t, 0) + 1
        return out

    def test_store_drains(self):
        sink = up.Sink()
        self.addCleanup(sink.cleanup)
        sink.start()
        srv = h.Server(settings=up.forward_settings([sink.port]))
        self.addCleanup(srv.cleanup)
        srv.start()

        # record every segment file that ever exists while mail flows
        seen = {}
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                try:
                    for w, seqs in segment_files(srv.data_dir).items():
                        seen.setdefault(w, set()).update(seqs)
                except OSError:
                    pass
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            tokens = self.send_all(srv)
            ok = up.wait_for(lambda: set(tokens) <= set(self.delivered_tokens(sink)),
                             DELIVERY_TIMEOUT_S, 0.3)
            self.assertTrue(ok, "%d of %d messages not delivered;\n%s"
                            % (len(set(tokens) - set(self.delivered_tokens(sink))),
                               len(tokens), srv.stderr_text()[-3000:]))
        finally:
            stop.set()
            watcher.join(timeout=10)
        created = sum(max(s) for s in seen.values() if s)  # seqs are 1, 2, ...
        self.assertGreaterEqual(created, 2 * 3, "the test did not fill several segments "
                                "per worker: %r" % seen)

        # Reclamation runs after the delivery-log commit: give it a moment.
        # The segment being written is the newest one holding records (ls);
        # the store may have pre-zeroed the next one already. Every segment
        # older than the one being written is sealed and must go.
        def sealed_left():
            now = segment_files(srv.data_dir)
            active = {}
            for m in srv.ls():
                w, seq = queue_id_parts(m["id"])
                active[w] = max(active.get(w, 0), seq)
            left = []
            for w, seqs in now.items():
                newest = active.get(w, max(seqs, default=0) - 1)
                left.extend((w, q) for q in seqs if q < newest)
            return left

        def reclaimed():
            ev = up.log_events(srv, "segment_reclaimed")
            return ev if not sealed_left() else None

        events = up.wait_for(reclaimed, 20, 0.2)
        now = segment_files(srv.data_dir)
        self.assertTrue(events, "sealed segments %r still present after every message was "
                        "delivered: files %r (created %r);\n%s"
                        % (sealed_left(), now, seen, srv.stderr_text()[-2000:]))
        present = sum(len(s) for s in now.values())
        print("drain: %d messages, %d segments created, %d reclaimed, %d left"
              % (len(tokens), created, len(events), present), file=sys.stderr)
        self.assertLess(present, created)
        for e in events:
            w, seq = int(e["worker"]), int(e["seq"])
            base = os.path.join(srv.data_dir, "w%d" % w, "%08d" % seq)
            self.assertFalse(os.path.exists(base + ".seg"), "%s.seg still exists" % base)
            self.assertFalse(os.path.exists(base + ".dlog"), "%s.dlog still exists" % base)
        # every sealed segment that ever existed was reclaimed exactly once
        reclaimed_set = [(int(e["worker"]), int(e["seq"])) for e in events]
        self.assertEqual(len(reclaimed_set), len(set(reclaimed_set)), "reclaimed twice")
        for w, seqs in seen.items():
            for q in seqs:
                if q not in now.get(w, set()):
                    self.assertIn((w, q), reclaimed_set, "w%d seq %d vanished without an "
                                  "event=segment_reclaimed" % (w, q))

        # the tools agree with the files
        stats = srv.stats()
        seg_key = [k for k in stats if k.lower().startswith("segment")]
        self.assertEqual(len(seg_key), 1, "stats output %r" % stats)
        self.assertEqual(int(stats[seg_key[0]]), present, "stats %r vs files %r"
                         % (stats, now))
        listed = srv.ls()
        self.assertLess(len(listed), len(tokens), "ls still lists every message")
        for m in listed:
            w, seq = queue_id_parts(m["id"])
            self.assertIn(seq, now.get(w, set()), "ls lists %s from a deleted segment"
                          % m["id"])
        cp = srv.verify()
        self.assertEqual(cp.returncode, 0, "verify after reclamation: %r %r"
                         % (cp.stdout[-500:], cp.stderr[-500:]))

        # a restart finds nothing to deliver
        srv.stop_checked(self)
        before = self.delivered_tokens(sink)
        srv.start()
        time.sleep(4.0)  # retry_min is 1s: anything pending would go now
        after = self.delivered_tokens(sink)
        self.assertEqual(after, before, "a restart delivered again")
        dups = {t: n for t, n in after.items() if n > 1}
        self.assertEqual(dups, {}, "duplicates")
        srv.stop_checked(self)


if __name__ == "__main__":
    unittest.main()
