#!/usr/bin/env python3
"""A full disk, for real: the store on a small ext4 file system mounted from
a loop device, far below store_max_bytes, so the file system runs out
first.

- Filled by mail while the upstream is down: MAIL gets 452 4.3.1 once no
  segment can be made; every transaction before that ended with 250 or a
  4.3.x temporary failure at the end of DATA (never a hang, a 5xx or a
  dropped connection);
  every acknowledged message is in the store after a restart on the full
  disk. Then the upstream comes up: forwarding drains the store, segments
  are deleted, and MAIL is accepted again; every acknowledged message
  reaches the upstream intact.
- Filled by something else (a ballast file an operator then deletes):
  452 4.3.1 at MAIL while the disk is full, 250 again once the ballast is
  gone, with no restart, nothing acknowledged lost.

Needs root, losetup and mkfs.ext4; exits 77 with the reason when it cannot
mount. Mounts, loop devices and images are removed whatever happens.
"""

import hashlib
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402
from test_store_filesystems import Mount  # noqa: E402

FS_BYTES = 16 * 1024 * 1024   # the file system (sparse image)
BODY_LINES = 100              # about 100 KB per message
MESSAGES_MAX = 400            # far more than fit: the loop is bounded
REFUSALS_TO_SEE = 3           # MAILs refused in a row: the store says full
RESUME_TIMEOUT_S = 60.0
DELIVERY_TIMEOUT_S = 60.0


def message(i):
    token = h.unique_token("diskfull%d" % i)
    body = ("Subject: %s\r\n\r\n" % token).encode() + (b"d" * 998 + b"\r\n") * BODY_LINES
    return token, body


class DiskFullTest(unittest.TestCase):

    def setUp(self):
        up.require_root()

    def mount_small_ext4(self):
        m = Mount(self, "ext4")
        import test_store_filesystems as fs
        saved = fs.IMAGE_BYTES
        fs.IMAGE_BYTES = FS_BYTES
        try:
            m.mount()
        finally:
            fs.IMAGE_BYTES = saved
        return m

    def server(self, m, upstream_port):
        data_dir = os.path.join(m.point, "data")
        settings = [(k, v) for k, v in up.forward_settings([upstream_port])
                    if k not in ("segment_size", "max_message_size", "store_max_bytes")]
        settings += [("data_dir", data_dir), ("segment_size", "1M"),
                     ("max_message_size", "256k"), ("store_max_bytes", "1G")]
        srv = h.Server(workers=1, settings=settings)
        srv.data_dir = data_dir
        self.addCleanup(srv.cleanup)
        return srv

    def fill(self, srv, acked, limit=MESSAGES_MAX):
        """Sends messages until REFUSALS_TO_SEE MAILs in a row get 452 4.3.1.
        Returns the refusals seen (code, enhanced, where). Every other
        outcome than 250 or a 4.3.1 refusal fails the test."""
        refusals = []
        in_a_row = 0
        with srv.conn(timeout=30) as c:
            h.assert_reply(self, c.cmd("EHLO full.example"), 250)
            for i in range(limit):
                r = c.cmd("MAIL FROM:<s@client.example>")
                if r.code != 250:
                    self.assertEqual((r.code, r.enhanced), (452, "4.3.1"),
                                     "MAIL on a full disk: %r" % r.text)
                    refusals.append((r.code, r.enhanced, "MAIL"))
                    in_a_row += 1
                    if in_a_row == REFUSALS_TO_SEE:
                        return refusals
                    time.sleep(0.2)
                    continue
                in_a_row = 0
                h.assert_reply(self, c.cmd("RCPT TO:<user@example.com>"), 250, "2.1.5")
                h.assert_reply(self, c.cmd("DATA"), 354)
                token, body = message(i)
                c.send(h.dot_stuff(body))
                r = c.reply()
                if r.code == 250:
                    acked.append((h.queued_id(self, r), token, hashlib.sha256(body).digest()))
                else:
                    # the message finished as the last segment filled: a
                    # temporary refusal, nothing acknowledged
                    self.assertEqual(r.code // 100, 4, "end of DATA on a full disk: %r"
                                     % r.text)
                    self.assertTrue(r.enhanced.startswith("4.3."), r.text)
                    refusals.append((r.code, r.enhanced, "DATA"))
        self.fail("%d messages of 100 KB on a %d MB file system and no 452 at MAIL "
                  "(refusals %r)" % (limit, FS_BYTES >> 20, refusals))

    def check_in_store(self, srv, acked):
        ids = set(srv.ls_ids())
        missing = [q for q, _, _ in acked if q not in ids]
        self.assertEqual(missing, [], "acknowledged messages lost on a full disk: %s"
                         % missing[:5])

    def accepts_again(self, srv):
        """MAIL answered 250 again within RESUME_TIMEOUT_S; sends one message."""
        deadline = time.monotonic() + RESUME_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            with srv.conn() as c:
                h.assert_reply(self, c.cmd("EHLO resume.example"), 250)
                last = c.cmd("MAIL FROM:<s@client.example>")
                if last.code == 250:
                    h.assert_reply(self, c.cmd("RCPT TO:<user@example.com>"), 250)
                    h.assert_reply(self, c.cmd("DATA"), 354)
                    c.send(h.dot_stuff(b"Subject: resumed\r\n\r\nok\r\n"))
                    return h.queued_id(self, c.reply())
                self.assertEqual((last.code, last.enhanced), (452, "4.3.1"), last.text)
            time.sleep(0.5)
        self.fail("still refused %.0fs after space came back: %r; log tail:\n%s"
                  % (RESUME_TIMEOUT_S, last and last.text, srv.stderr_text()[-3000:]))

    def test_filled_by_mail_drained_by_forwarding(self):
        m = self.mount_small_ext4()
        sink = up.Sink()  # not started yet: the upstream is down
        self.addCleanup(sink.cleanup)
        srv = self.server(m, sink.port)
        srv.start()
        acked = []
        refusals = self.fill(srv, acked)
        self.assertGreater(len(acked), 10, "too few messages before the disk was full")
        st = os.statvfs(m.point)
        print("disk full: %d acknowledged, refusals %r, %d KB free" %
              (len(acked), refusals, st.f_bavail * st.f_frsize // 1024), file=sys.stderr)
        # A restart on the full disk: recovery runs, nothing acknowledged is lost.
        srv.stop_checked(self)
        srv.start()
        self.check_in_store(srv, acked)
        self.assertEqual(srv.verify().returncode, 0)
        # The upstream comes up: forwarding drains, segments go, mail flows.
        sink.start()
        acked.append((self.accepts_again(srv), "resumed", None))
        want = {t for _, t, _ in acked}
        self.assertTrue(up.wait_for(lambda: want <= set(sink.subjects()), DELIVERY_TIMEOUT_S,
                                    0.5), "not everything reached the upstream: %s"
                        % sorted(want - set(sink.subjects()))[:5])
        sent = {t: d for _, t, d in acked}
        for dump in sink.dumps():
            _, rest = h.split_received(dump.message)
            token = rest.split(b"\r\n", 1)[0][len(b"Subject: "):].decode()
            if sent.get(token) is not None:
                self.assertEqual(hashlib.sha256(rest).digest(), sent[token],
                                 "%s arrived damaged" % token)
        srv.stop_checked(self)
        err = srv.stderr_text()
        self.assertIn("spare_segment_failed", err, "the disk never filled up?")

    def test_filled_by_ballast_then_deleted(self):
        m = self.mount_small_ext4()
        sink = up.Sink()  # down for the whole test: only the operator frees space
        self.addCleanup(sink.cleanup)
        srv = self.server(m, sink.port)
        srv.start()
        # Leave room for a few segments only.
        ballast = os.path.join(m.point, "ballast")
        st = os.statvfs(m.point)
        room = st.f_bavail * st.f_frsize - 4 * 1024 * 1024
        with open(ballast, "wb") as f:
            chunk = b"\0" * (1 << 20)
            while room > 0:
                f.write(chunk[:min(room, len(chunk))])
                room -= len(chunk)
            f.flush()
            os.fsync(f.fileno())
        acked = []
        refusals = self.fill(srv, acked)
        print("ballast: %d acknowledged, refusals %r" % (len(acked), refusals),
              file=sys.stderr)
        self.check_in_store(srv, acked)
        os.unlink(ballast)  # the operator makes room
        self.accepts_again(srv)
        self.check_in_store(srv, acked)
        srv.stop_checked(self)
        self.assertEqual(srv.verify().returncode, 0)


if __name__ == "__main__":
    result = unittest.main(exit=False).result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.testsRun > 0 and len(result.skipped) == result.testsRun:
        sys.exit(h.SKIP_EXIT)
    sys.exit(0)
