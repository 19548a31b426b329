#!/usr/bin/env python3
"""A stored record damaged under the running gateway, before it is
forwarded. The gateway forwards to a port where nothing listens yet, so the
first attempt reads the record intact and defers; then one byte of the
record's body is flipped in its segment file. The next attempt reads it in
full and the check fails: the message must be set aside (logged, counted in
ringmx_forward_set_aside_total), never sent, and a copy of the damaged bytes
must appear in the shard's quarantine/, without blocking the worker. Then
smtp-sink listens on that port: a new message is accepted and forwarded, and
the damaged one is not.
"""

import os
import re
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

WAIT_S = 20.0
RECORD_MAGIC = 0x584D4752  # "RGMX" little-endian (storage/record.h)


def metric(text, name):
    value = h.metric_value(text, name)
    if value is None:
        raise AssertionError("metric %s missing" % name)
    return value


class ForwardCorruptRecordTest(unittest.TestCase):

    def test_flipped_byte_is_set_aside_and_quarantined(self):
        h.require_program("smtp-sink")
        port = h.free_port()  # nothing listens until the sink starts
        mport = h.free_port()
        srv = h.Server(workers=1, settings=up.forward_settings(
            [port], retry_min="1s", retry_max="1s",
            extra=[("metrics_listen", "127.0.0.1:%d" % mport)]))
        self.addCleanup(srv.cleanup)
        srv.start()
        bad_token = h.unique_token("damaged")
        with srv.conn() as c:
            qid = h.send_message(self, c, ("Subject: %s\r\n\r\nbody of %s\r\n"
                                           % (bad_token, bad_token)).encode(),
                                 helo="corrupt.example")
        # one attempt read the record intact and deferred
        self.assertTrue(up.wait_for(lambda: "upstream_connect_failed" in srv.stderr_text(),
                                    WAIT_S), srv.stderr_text()[-3000:])
        self.assertNotIn("record_set_aside", srv.stderr_text())

        shard = os.path.join(srv.data_dir, "w0")
        segs = sorted(f for f in os.listdir(shard) if f.endswith(".seg"))
        needle = ("body of %s" % bad_token).encode()
        found = None
        for name in segs:
            with open(os.path.join(shard, name), "rb") as f:
                data = f.read()
            at = data.find(needle)
            if at >= 0:
                found = (name, at + len("body of "))
                break
        self.assertIsNotNone(found, "the record's body is in no segment")
        seg_path = os.path.join(shard, found[0])
        fd = os.open(seg_path, os.O_RDWR)
        try:
            byte = os.pread(fd, 1, found[1])
            self.assertEqual(os.pwrite(fd, bytes([byte[0] ^ 0x20]), found[1]), 1)
        finally:
            os.close(fd)

        ok = up.wait_for(lambda: "record_set_aside" in srv.stderr_text(), WAIT_S)
        err = srv.stderr_text()
        self.assertTrue(ok, "not set aside within %.0fs: %s" % (WAIT_S, err[-3000:]))
        self.assertRegex(err, r"event=record_set_aside worker=0 id=%s check=\d+" % qid)
        self.assertNotIn("record_quarantine_failed", err)

        # the copy: quarantine/<seq>-<offset>.bad holds the record as it is
        # now in its segment, damage included
        qdir = os.path.join(shard, "quarantine")
        self.assertTrue(up.wait_for(lambda: os.path.isdir(qdir) and os.listdir(qdir), WAIT_S),
                        "no copy in quarantine/")
        copies = os.listdir(qdir)
        self.assertEqual(len(copies), 1, copies)
        m = re.match(r"^(\d{8})-(\d+)\.bad$", copies[0])
        self.assertIsNotNone(m, copies[0])
        self.assertEqual("%s.seg" % m.group(1), found[0])
        with open(os.path.join(qdir, copies[0]), "rb") as f:
            copy = f.read()
        offset = int(m.group(2))
        with open(seg_path, "rb") as f:
            f.seek(offset)
            self.assertEqual(f.read(len(copy)), copy)
            # the whole padded record: its header's length, padded to 8
            # bytes, and then the segment's zeros or the next record (a
            # concurrent test's relay may have sent one here)
            self.assertEqual(len(copy) % 8, 0)
            magic, _crc, _type, _version, length = struct.unpack_from("<IIHHI", copy)
            self.assertEqual(magic, RECORD_MAGIC)
            self.assertEqual(len(copy), (length + 7) // 8 * 8)
            after = f.read(64)
            self.assertTrue(after == bytes(64) or
                            struct.unpack_from("<I", after)[0] == RECORD_MAGIC, after)
        self.assertIn(("body of %s" % bad_token).encode()[:8], copy)
        self.assertNotIn(needle, copy)  # the flipped byte is in the copy
        self.assertLessEqual(offset, found[1])
        self.assertGreater(offset + len(copy), found[1])
        self.assertEqual(os.stat(os.path.join(qdir, copies[0])).st_mode & 0o777, 0o600)

        text = h.scrape_metrics(mport)
        self.assertEqual(metric(text, "ringmx_forward_set_aside_total"), 1)
        self.assertEqual(metric(text, "ringmx_forward_record_read_failures_total"), 0)

        # the gateway keeps serving: a new message is accepted and forwarded
        # once the relay is up, the damaged one never
        sink = up.Sink(port=port)
        self.addCleanup(sink.cleanup)
        sink.start()
        good_token = h.unique_token("intact")
        with srv.conn() as c:
            h.send_message(self, c, ("Subject: %s\r\n\r\nfine\r\n" % good_token).encode(),
                           helo="corrupt.example")
        self.assertTrue(up.wait_for(lambda: good_token in sink.subjects(), WAIT_S),
                        srv.stderr_text()[-3000:])
        self.assertNotIn(bad_token, sink.subjects())
        self.assertEqual(metric(h.scrape_metrics(mport), "ringmx_forward_set_aside_total"), 1)
        srv.stop_checked(self)


if __name__ == "__main__":
    unittest.main()
