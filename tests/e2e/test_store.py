#!/usr/bin/env python3
"""The store as seen from outside: ringmx-store on a live and a stopped
store, a flipped byte in a stored body caught by verify (exit 1), recovery
on restart keeping every intact message, and messages spread over many
segments and both worker shards.
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402


def segment_files(data_dir):
    out = []
    for root, _, files in os.walk(data_dir):
        if "quarantine" in root:
            continue
        out += [os.path.join(root, f) for f in files if f.endswith(".seg")]
    return sorted(out)


class StoreTest(unittest.TestCase):

    def start(self, **kw):
        srv = h.Server(**kw)
        self.addCleanup(srv.cleanup)
        srv.start()
        return srv

    def test_show_unknown_id(self):
        srv = self.start()
        cp = srv.store("show", "0123456789ABCDEF")
        self.assertNotEqual(cp.returncode, 0, "show of an id never issued exits 0: %r" % cp.stdout)
        cp = srv.store("show", "not-an-id")
        self.assertNotEqual(cp.returncode, 0)
        srv.stop_checked(self)

    def corrupt_first_of_two(self):
        """Stores two messages back to back in one shard, stops the server,
        flips a byte in the FIRST body (a bad record followed by a good one
        cannot be a torn tail). Returns (srv, ids, tokens)."""
        srv = self.start()
        tokens = [h.unique_token("flip").encode(), h.unique_token("keep").encode()]
        ids = []
        with srv.conn() as c:
            # one connection: both records land in the same shard, in order
            for t in tokens:
                ids.append(h.send_message(self, c, b"Subject: s\r\n\r\n" + t + b"\r\n",
                                          helo="store.example"))
        srv.stop_checked(self)
        cp = srv.verify()
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        hits = []
        for path in segment_files(srv.data_dir):
            with open(path, "rb") as f:
                data = f.read()
            i = data.find(tokens[0])
            if i >= 0:
                hits.append((path, i, data.find(tokens[1])))
        self.assertEqual(len(hits), 1, "token found %d times on disk" % len(hits))
        path, i, j = hits[0]
        self.assertGreater(j, i, "the second message is not after the first in its segment")
        with open(path, "r+b") as f:
            f.seek(i + 3)
            b = f.read(1)
            f.seek(i + 3)
            f.write(bytes([b[0] ^ 0x20]))
        return srv, ids, tokens

    def test_flipped_byte_detected_by_verify(self):
        srv, ids, tokens = self.corrupt_first_of_two()
        cp = srv.verify()
        self.assertEqual(cp.returncode, 1, "verify with a flipped byte in a record followed by "
                         "a good one: exit %d, %r" % (cp.returncode, cp.stdout + cp.stderr))
        self.assertNotRegex(cp.stdout.decode("latin-1"), r"(?m)^ok ")

    def test_restart_after_corruption(self):
        srv, ids, tokens = self.corrupt_first_of_two()
        srv.start()  # recovery meets the damaged record and still comes up
        self.assertRegex(srv.stderr_text(), r"quarantined=[1-9]",
                         "recovery does not report the damaged record")
        with srv.conn() as c:
            qid = h.send_message(self, c, b"Subject: later\r\n\r\nlater\r\n", helo="store.example")
        self.assertIn(qid, srv.ls_ids())
        srv.stop_checked(self)

    def test_good_record_after_a_bad_one_survives_recovery(self):
        # DESIGN: bad records are quarantined at recovery; the acknowledged
        # message stored after the damaged one must not be lost with it.
        srv, ids, tokens = self.corrupt_first_of_two()
        srv.start()
        listed = srv.ls_ids()
        self.assertIn(ids[1], listed, "an intact acknowledged message after a damaged record "
                      "is gone after recovery; ls: %r; stderr: %s"
                      % (listed, srv.stderr_text()[-1500:]))
        self.assertIn(tokens[1], srv.show_body(ids[1]))
        srv.stop_checked(self)

    def test_many_segments_both_shards(self):
        srv = self.start(settings=[("segment_size", "1M"), ("max_message_size", "256k")])
        sent = {}
        body_line = b"m" * 900 + b"\r\n"
        conns = [srv.conn(), srv.conn(), srv.conn(), srv.conn()]
        try:
            for c in conns:
                h.assert_reply(self, c.cmd("EHLO seg.example"), 250)
            for i in range(80):  # 80 x ~100 KB = 8 MB over 1 MB segments
                token = h.unique_token("seg%d" % i).encode()
                body = b"Subject: " + token + b"\r\n\r\n" + body_line * 110
                sent[h.send_message(self, conns[i % 4], body)] = body
        finally:
            for c in conns:
                c.close()
        shards = {os.path.basename(os.path.dirname(p)) for p in segment_files(srv.data_dir)}
        segs = segment_files(srv.data_dir)
        self.assertGreaterEqual(len(segs), 8, "8 MB in 1 MB segments: %r" % segs)
        listed = set(srv.ls_ids())
        for qid, body in sent.items():
            self.assertIn(qid, listed)
        for qid in list(sent)[::9]:
            self.assertEqual(h.split_received(srv.show_body(qid))[1], sent[qid])
        cp = srv.verify()
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        m = re.search(rb"(?m)^ok (\d+) records", cp.stdout)
        self.assertTrue(m and int(m.group(1)) >= len(sent), cp.stdout)
        print("store: %d messages in %d segments over shards %s"
              % (len(sent), len(segs), sorted(shards)), file=sys.stderr)
        srv.stop_checked(self)
        # and the same after a restart
        srv.start()
        self.assertTrue(set(sent) <= set(srv.ls_ids()))
        srv.stop_checked(self)


if __name__ == "__main__":
    unittest.main()
