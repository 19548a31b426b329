#!/usr/bin/env python3
"""Mail through several segment rollovers on real file systems, each mounted
for the test: tmpfs (no O_DIRECT before Linux 6.6), ramfs (no O_DIRECT at
all), ext4, ext4 without extents (fallocate answers EOPNOTSUPP: spares are
made by the zero-fill alone) and xfs, the last three on loop devices of
sparse 320 MB image files. Every message gets 250, the run-time spares are
made (no spare_segment_failed), and the store verifies after a clean stop.

The commit path (store_io = auto) is the one the file system and the device
allow: the log's event=store_io says direct (O_DIRECT commits) where an
O_DIRECT open works there and the device needs no cache flush after a
synchronous write (no block device, as tmpfs; or the loop device's
queue/write_cache set to "write through" for the test), buffered with
reason=device_cache_needs_flush on a device with a volatile write cache and
no FUA ("write back"), buffered with reason=o_direct_refused where O_DIRECT
is refused; on ramfs store_io = direct stops start-up saying why, store_io =
direct is honoured on a write-back device, and store_io = buffered is
honoured everywhere.

Needs root, losetup and mkfs.ext4 / mkfs.xfs; a file system that cannot be
mounted here is skipped by its case, and the whole program exits 77 with
the reason when none can. Mounts, loop devices and images are removed
whatever happens.
"""

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

    def __init__(self, testcase, kind, write_cache=None):
        self.t = testcase
        self.kind = kind
        self.write_cache = write_cache  # set on the loop device: "write back"/"write through"
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
        if self.write_cache is not None:
            path = self.queue_attribute_path("write_cache")
            try:
                with open(path, "w") as f:
                    f.write(self.write_cache)
            except OSError as e:
                self.skip("cannot set %s: %s" % (path, e))
            if self.queue_attribute("write_cache") != self.write_cache:
                self.skip("%s did not take %r" % (path, self.write_cache))
        cp = run(mkfs + [self.loop])
        if cp.returncode != 0:
            self.skip("%s failed: %s" % (" ".join(mkfs), cp.stderr.decode().strip().splitlines()[:1]))
        fstype = "xfs" if self.kind == "xfs" else "ext4"
        cp = run(["mount", "-t", fstype, self.loop, self.point])
        if cp.returncode != 0:
            self.skip("mount -t %s failed: %s" % (fstype, cp.stderr.decode().strip()))
        self.t.addCleanup(self.umount)

    def queue_attribute_path(self, name):
        return "/sys/block/%s/queue/%s" % (os.path.basename(self.loop), name)

    def queue_attribute(self, name):
        with open(self.queue_attribute_path(name)) as f:
            return f.read().strip()

    def needs_cache_flush(self):
        """Whether the loop device keeps a volatile write cache without FUA
        (a synchronous direct write then needs a flush of its own); False
        for a file system with no block device (tmpfs, ramfs)."""
        if self.loop is None:
            return False
        return (self.queue_attribute("write_cache") == "write back"
                and self.queue_attribute("fua") != "1")

    def umount(self):
        run(["umount", self.point])

    def detach(self):
        run(["losetup", "-d", self.loop])


def store_io_lines(text):
    """(mode, configured, reason) of each event=store_io line."""
    return re.findall(r"event=store_io shard=w\d+ mode=(\w+) configured=(\w+) reason=(\w+)",
                      text)


class StoreFilesystemsTest(unittest.TestCase):

    def mail_through_rollovers(self, kind, store_io="auto", write_cache=None):
        m = Mount(self, kind, write_cache)
        m.mount()
        direct_works = h.o_direct_works(m.point)
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
        elif direct_works and store_io == "auto" and m.needs_cache_flush():
            want = [("buffered", "auto", "device_cache_needs_flush")]
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
        if h.o_direct_works(m.point):
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

    def test_ext4_write_back_cache(self):
        """auto on a device with a volatile cache and no FUA: buffered."""
        self.mail_through_rollovers("ext4", write_cache="write back")

    def test_ext4_write_through_cache(self):
        """auto on a device without a volatile cache: direct."""
        self.mail_through_rollovers("ext4", write_cache="write through")

    def test_xfs_write_through_cache(self):
        self.mail_through_rollovers("xfs", write_cache="write through")

    def test_ext4_direct_on_write_back_cache(self):
        """store_io = direct is the operator's choice: honoured on any device
        that takes O_DIRECT."""
        self.mail_through_rollovers("ext4", store_io="direct", write_cache="write back")

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
