#!/usr/bin/env python3
"""A stored record that cannot be read back is not a corrupt record. The
gateway forwards to a port where nothing listens, so each attempt reads the
record and then defers; the segment file is then cut short under the
running gateway, so the next read comes back short. That message must be
deferred and retried (record_read_failed), never set aside.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

WAIT_S = 15.0


class ForwardReadErrorsTest(unittest.TestCase):

    def test_short_read_defers(self):
        dead = h.free_port()  # nothing listens: every attempt defers
        srv = h.Server(workers=1, settings=up.forward_settings([dead], retry_min="1s",
                                                                retry_max="1s"))
        self.addCleanup(srv.cleanup)
        srv.start()
        with srv.conn() as c:
            qid = h.send_message(self, c, b"Subject: short\r\n\r\n" +
                                 h.unique_token("short").encode() + b"\r\n",
                                 helo="read.example")
        # one attempt read the record intact and deferred
        self.assertTrue(up.wait_for(lambda: "upstream_connect_failed" in srv.stderr_text(),
                                    WAIT_S), srv.stderr_text()[-3000:])
        segs = []
        for root, _, files in os.walk(srv.data_dir):
            if "quarantine" not in root:
                segs += [os.path.join(root, f) for f in files if f.endswith(".seg")]
        seg = sorted(segs)[0]
        os.truncate(seg, 4096)  # the header block stays; the record is gone
        ok = up.wait_for(lambda: "record_read_failed" in srv.stderr_text()
                         or "record_set_aside" in srv.stderr_text(), WAIT_S)
        err = srv.stderr_text()
        self.assertTrue(ok, "no second read within %.0fs: %s" % (WAIT_S, err[-3000:]))
        self.assertNotIn("record_set_aside", err, err[-3000:])
        self.assertRegex(err, r"event=record_read_failed worker=0 id=%s read=0 .*error=EIO" % qid)
        srv.stop_checked(self)


if __name__ == "__main__":
    unittest.main()
