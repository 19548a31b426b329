#!/usr/bin/env python3
"""Mail through several segment rollovers on real file systems, each mounted
for the test: tmpfs (no O_DIRECT before Linux 6.6), ramfs (no O_DIRECT at
all), ext4, ext4 without extents (fallocate answers EOPNOTSUPP: spares are
made by the zero-fill alone) and xfs, the last three on loop devices of
sparse 320 MB image files. Every message gets 250, the run-time spares are
made (no spare_segment_failed), and the store verifies after a clean stop.

The commit path (store_io = auto) is the one the file system allows: the
log's event=store_io says direct (O_DIRECT commits) where an O_DIRECT open
works there, buffered with reason=o_direct_refused where it is refused; on
ramfs store_io = direct stops start-up saying why, and store_io = buffered
is honoured everywhere.

Needs root, losetup and mkfs.ext4 / mkfs.xfs; a file system that cannot be
mounted here is skipped by its case, and the whole program exits 77 with
the reason when none can. Mounts, loop devices and images are removed
whatever happens.
"""

import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

IMAGE_BYTES = 320 * 1024 * 1024  # sparse; mkfs.xfs wants more than 300 MB
MESSAGES = 24                  # of BODY_BYTES: about 5 MB, over 1M segments
BODY_BYTES = 200 * 1024
CMD_TIMEOUT_S = 60


def run(args):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=CMD_TIMEOUT_S)


class Mount:
    """One mounted file system under a temporary directory."""

    def __init__(self, testcase, kind):
        self.t = testcase
        self.kind = kind
        self.tmp = tempfile.mkdtemp(prefix="ringmx-fs-")
        testcase.addCleanup(shutil.rmtree, self.tmp, True)
        self.point = os.path.join(self.tmp, "mnt")
        os.mkdir(self.point)
        self.loop = None

    def skip(self, why):
        self.t.skipTest("%s: %s" % (self.kind, why))

    def mount(self):
        if os.geteuid() != 0:
            self.skip("mounting needs root")
        if self.kind in ("tmpfs", "ramfs"):
            opts = ["-o", "size=64m"] if self.kind == "tmpfs" else []
            cp = run(["mount", "-t", self.kind] + opts + [self.kind, self.point])
            if cp.returncode != 0:
                self.skip("mount -t %s failed: %s" % (self.kind, cp.stderr.decode().strip()))
            self.t.addCleanup(self.umount)
            return
        mkfs = {"ext4": ["mkfs.ext4", "-q", "-F"],
                "ext4-noextents": ["mkfs.ext4", "-q", "-F", "-O", "^extents,^64bit"],
                "xfs": ["mkfs.xfs", "-q", "-f"]}[self.kind]
        if shutil.which(mkfs[0]) is None or shutil.which("losetup") is None:
            self.skip("%s or losetup is not installed" % mkfs[0])
        image = os.path.join(self.tmp, "fs.img")
        with open(image, "wb") as f:
            f.truncate(IMAGE_BYTES)
        cp = run(["losetup", "-f", "--show", image])
        if cp.returncode != 0:
            self.skip("losetup failed: %s" % cp.stderr.decode().strip())
        self.loop = cp.stdout.decode().strip()
        self.t.addCleanup(self.detach)
        cp = run(mkfs + [self.loop])
        if cp.returncode != 0:
            self.skip("%s failed: %s" % (" ".join(mkfs), cp.stderr.decode().strip().splitlines()[:1]))
        fstype = "xfs" if self.kind == "xfs" else "ext4"
        cp = run(["mount", "-t", fstype, self.loop, self.point])
        if cp.returncode != 0:
            self.skip("mount -t %s failed: %s" % (fstype, cp.stderr.decode().strip()))
        self.t.addCleanup(self.umount)

    def umount(self):
        run(["umount", self.point])

    def detach(self):
        run(["losetup", "-d", self.loop])


def o_direct_works(directory):
    """Whether a file in directory opens with O_DIRECT (EINVAL: refused)."""
    path = os.path.join(directory, "o_direct_probe")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return False
    finally:
        if os.path.exists(path):
            os.unlink(path)
    os.close(fd)
    return True


def store_io_lines(text):
    """(mode, configured, reason) of each event=store_io line."""
    return re.findall(r"event=store_io shard=w\d+ mode=(\w+) configured=(\w+) reason=(\w+)",
                      text)


class StoreFilesystemsTest(unittest.TestCase):

    def mail_through_rollovers(self, kind, store_io="auto"):
        m = Mount(self, kind)
        m.mount()
        direct_works = o_direct_works(m.point)
        data_dir = os.path.join(m.point, "data")
        srv = h.Server(workers=1, settings=[("data_dir", data_dir), ("segment_size", "1M"),
                                            ("max_message_size", "256k"),
                                            ("store_io", store_io)])
        srv.data_dir = data_dir  # what ringmx-store is pointed at
        self.addCleanup(srv.cleanup)
        srv.start()
        ids = []
        with srv.conn() as c:
            for i in range(MESSAGES):
                token = h.unique_token("fs%d" % i).encode()
                body = b"Subject: rollover\r\n\r\n" + token + b"\r\n"
                body += (b"x" * 998 + b"\r\n") * (BODY_BYTES // 1000)
                ids.append(h.send_message(self, c, body, helo="fs.example"))
        segments = []
        for root, _, files in os.walk(data_dir):
            segments += [f for f in files if f.endswith(".seg") and "quarantine" not in root]
        srv.stop_checked(self)
        err = srv.stderr_text()
        self.assertNotIn("spare_segment_failed", err, err[-3000:])
        if store_io == "buffered":
            want = [("buffered", "buffered", "configured")]
        elif direct_works:
            want = [("direct", store_io, "o_direct_accepted" if store_io == "auto"
                     else "configured")]
        else:
            want = [("buffered", store_io, "o_direct_refused")]
        self.assertEqual(store_io_lines(err), want, err[-3000:])
        # 24 messages of 200 KiB in 1 MiB segments: 5 or more, and a spare
        self.assertGreaterEqual(len(segments), 6, sorted(segments))
        cp = srv.verify()
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(sorted(srv.ls_ids()), sorted(ids))

    def test_tmpfs(self):
        self.mail_through_rollovers("tmpfs")

    def test_ramfs(self):
        self.mail_through_rollovers("ramfs")

    def test_ramfs_direct_refused(self):
        """store_io = direct where O_DIRECT is refused: start-up stops and
        says why, rather than committing some other way."""
        m = Mount(self, "ramfs")
        m.mount()
        if o_direct_works(m.point):
            self.skipTest("ramfs takes O_DIRECT here")
        data_dir = os.path.join(m.point, "data")
        srv = h.Server(workers=1, settings=[("data_dir", data_dir), ("segment_size", "1M"),
                                            ("max_message_size", "256k"),
                                            ("store_io", "direct")])
        self.addCleanup(srv.cleanup)
        with self.assertRaises(h.StartError) as cm:
            srv.start()
        self.assertIn("store_io = direct", str(cm.exception))
        self.assertIn("o_direct_refused", str(cm.exception))

    def test_ext4_buffered(self):
        self.mail_through_rollovers("ext4", store_io="buffered")

    def test_ext4(self):
        self.mail_through_rollovers("ext4")

    def test_ext4_without_extents(self):
        self.mail_through_rollovers("ext4-noextents")

    def test_xfs(self):
        self.mail_through_rollovers("xfs")


if __name__ == "__main__":
    result = unittest.main(exit=False).result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.testsRun > 0 and len(result.skipped) == result.testsRun:
        sys.exit(h.SKIP_EXIT)
    sys.exit(0)
