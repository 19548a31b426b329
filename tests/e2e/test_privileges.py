#!/usr/bin/env python3
"""Privilege drop: started as root with `user = nobody`, ringmx binds its
listeners, then every thread runs as nobody; the data_dir it creates is
nobody's with mode 0700, the store files written are nobody's, mail is
accepted and the drain exits 0. A data_dir that belongs to someone else
stops start-up with a message that says what to run. Without root (the
test needs it to switch users) the test is skipped."""

import os
import pwd
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

USER = "nobody"


def thread_uids(pid):
    """{tid: (real, effective, saved, fs) uid} for every thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            for line in f:
                if line.startswith("Uid:"):
                    out[int(tid)] = tuple(int(x) for x in line.split()[1:5])
    return out


class PrivilegeDrop(unittest.TestCase):

    def setUp(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("switching users needs root")
        self.pw = pwd.getpwnam(USER)

    def server(self, **kw):
        srv = h.Server(settings=[("user", USER)], **kw)
        self.addCleanup(srv.cleanup)
        # nobody must be able to reach data_dir inside the private tmp dir
        os.chmod(srv.tmp, 0o711)
        return srv

    def test_runs_as_user_and_owns_the_store(self):
        srv = self.server()
        srv.start()
        uids = thread_uids(srv.proc.pid)
        self.assertGreaterEqual(len(uids), 3, "main thread and two workers: %r" % uids)
        for tid, ids in uids.items():
            self.assertEqual(ids, (self.pw.pw_uid,) * 4, "thread %d uids %r" % (tid, ids))
        st = os.stat(srv.data_dir)
        self.assertEqual(st.st_uid, self.pw.pw_uid)
        self.assertEqual(st.st_mode & 0o777, 0o700)
        with srv.conn() as c:
            h.assert_reply(self, c.cmd("EHLO priv.client.example"), 250)
            qid = h.send_message(self, c, b"Subject: privileges\r\n\r\nhello\r\n")
            c.cmd("QUIT")
        self.assertIn(qid, srv.ls_ids())
        for root, dirs, files in os.walk(srv.data_dir):
            for name in dirs + files:
                path = os.path.join(root, name)
                self.assertEqual(os.stat(path).st_uid, self.pw.pw_uid, path)
        events = [line for line in srv.stderr_text().splitlines()
                  if "event=privileges_dropped" in line]
        self.assertEqual(len(events), 1, srv.stderr_text()[-2000:])
        self.assertIn("user=%s" % USER, events[0])
        srv.stop_checked(self)

    def test_data_dir_of_another_user_is_refused(self):
        srv = self.server()
        os.mkdir(srv.data_dir, 0o700)  # root's
        srv.start(wait=False)
        status = srv.proc.wait(timeout=20)
        self.assertEqual(status, 1)
        err = srv.stderr_text()
        self.assertIn("data_dir %s belongs to uid 0, not to user %s" % (srv.data_dir, USER),
                      err)
        self.assertIn("chown -R %s: %s" % (USER, srv.data_dir), err)

    def test_unknown_user_is_a_config_error(self):
        srv = h.Server(settings=[("user", "no-such-user-ringmx")])
        self.addCleanup(srv.cleanup)
        srv.start(wait=False)
        status = srv.proc.wait(timeout=20)
        self.assertEqual(status, 2)
        self.assertIn("user: 'no-such-user-ringmx' is not a user of this system",
                      srv.stderr_text())


if __name__ == "__main__":
    unittest.main()
