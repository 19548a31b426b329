#!/usr/bin/env python3
"""The forwarding queue as the operator sees and steers it with
ringmx-store: ls --deferred, requeue ID|all and delete ID.

The upstream is Postfix's smtp-sink. Soft-rejecting every RCPT (-r RCPT),
it leaves the messages deferred with a 4xx reply and, with retry_min = 1h,
a next attempt an hour away. Offline: ringmx is stopped, one message is
deleted and the rest requeued through the delivery logs; after a restart
with a healthy sink (-d dumps each message it takes) the requeued ones are
delivered at once and the deleted one never is. Live: the same requests
while ringmx runs go through a request file and SIGUSR1; that test skips
(exit 77) with a message saying why when the running gateway does not
write DATA_DIR/ringmx.pid or does not handle SIGUSR1.
"""

import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream  # noqa: E402

DELIVERY_WAIT_S = 60.0
SIGUSR1_BIT = 1 << (signal.SIGUSR1 - 1)

# QUEUE_ID AGE NEXT ATTEMPTS LAST_REPLY PENDING/TOTAL, e.g.
# 0100000100000040 2s in 57m 1 450 4.3.0 2/2
DEFERRED_RE = re.compile(
    r"^(?P<id>[0-9A-F]{16}) (?P<age>\d+[smhd]) (?P<next>now|in \d+[smhd]) "
    r"(?P<attempts>\d+) (?P<reply>-|(?P<code>[245]\d\d)(?: (?P<enh>[245]\.\d+\.\d+))?) "
    r"(?P<pending>\d+)/(?P<total>\d+)$")


def deferred(srv):
    """ringmx-store ls --deferred -> {id: match}."""
    cp = srv.store("ls", "--deferred", check=True)
    lines = cp.stdout.decode("utf-8", "replace").splitlines()
    if not lines or lines[0].split() != ["QUEUE_ID", "AGE", "NEXT", "ATTEMPTS", "LAST_REPLY",
                                         "PENDING/TOTAL"]:
        raise AssertionError("ls --deferred header: %r" % (lines[:1],))
    out = {}
    for line in lines[1:]:
        m = DEFERRED_RE.match(line)
        if m is None:
            raise AssertionError("ls --deferred line %r is not 'QUEUE_ID AGE NEXT ATTEMPTS "
                                 "LAST_REPLY PENDING/TOTAL'" % line)
        out[m.group("id")] = m
    return out


def wait_for(what, cond, timeout=DELIVERY_WAIT_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("timed out after %.0fs waiting for %s (last: %r)"
                         % (timeout, what, last))


def usr1_handled(pid):
    """True if process pid catches SIGUSR1, or every ringmx thread but the
    main one blocks it (the gateway's pattern: blocked before the workers
    start, taken by sigwaitinfo in the main thread); otherwise SIGUSR1
    would kill it. io_uring kernel threads (iou-*) are not counted."""
    threads = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                threads.append((int(tid), f.read()))
    except OSError:
        return False

    def has(text, key):
        m = re.search(r"^%s\s*([0-9a-fA-F]+)$" % key, text, re.M)
        return bool(m and int(m.group(1), 16) & SIGUSR1_BIT)

    if any(has(text, "SigCgt:") for _, text in threads):
        return True
    others = [text for tid, text in threads
              if tid != pid and re.search(r"^Name:\s*ringmx$", text, re.M)]
    return bool(others) and all(has(text, "SigBlk:") for text in others)


class QueueTest(unittest.TestCase):

    def start_deferring(self, sink, messages):
        """A gateway forwarding to sink with retry_min 1h; sends messages
        (list of (token, rcpts)); returns (srv, ids) once every message is
        deferred with a 4xx reply."""
        srv = h.Server(settings=[("upstream", "%s:%d" % (h.LOOPBACK4, sink.port)),
                                 ("retry_min", "1h"), ("retry_max", "2h"),
                                 ("upstream_timeout", "10s")])
        self.addCleanup(srv.cleanup)
        srv.start()
        ids = []
        for token, rcpts in messages:
            with srv.conn() as c:
                ids.append(h.send_message(self, c, b"Subject: q\r\n\r\n" + token + b"\r\n",
                                          rcpts=rcpts, helo="queue.example"))

        def all_deferred():
            d = deferred(srv)
            return d if all(i in d and int(d[i].group("attempts")) >= 1 for i in ids) else None
        d = wait_for("every message deferred once", all_deferred)
        for (token, rcpts), i in zip(messages, ids):
            m = d[i]
            self.assertTrue(m.group("code") and m.group("code").startswith("4"),
                            "last reply of %s: %r" % (i, m.group(0)))
            self.assertEqual(m.group("enh")[:2], "4.", m.group(0))
            self.assertTrue(m.group("next").startswith("in "),
                            "retry_min 1h, yet next attempt %r" % m.group(0))
            self.assertEqual(int(m.group("pending")), len(rcpts), m.group(0))
            self.assertEqual(int(m.group("total")), len(rcpts), m.group(0))
        return srv, ids

    def messages(self, n):
        out = []
        for k in range(n):
            rcpts = ["q%d@%s" % (k, h.DOMAIN)] + (["r%d@%s" % (k, h.DOMAIN)] if k % 2 else [])
            out.append((h.unique_token("queue%d" % k).encode(), rcpts))
        return out

    def soft_rejecting_sink(self):
        sink = upstream.Sink(extra=["-r", "RCPT"])
        self.addCleanup(sink.cleanup)
        return sink.start()

    def test_offline_requeue_and_delete(self):
        sink = self.soft_rejecting_sink()
        msgs = self.messages(3)
        srv, ids = self.start_deferring(sink, msgs)

        # Plain ls still lists every stored message.
        self.assertEqual(sorted(srv.ls_ids()), sorted(ids))

        srv.stop_checked(self)
        sink.stop()

        # Usage and unknown ids.
        self.assertEqual(srv.store("requeue").returncode, 2)
        self.assertEqual(srv.store("requeue", "not-an-id").returncode, 2)
        self.assertEqual(srv.store("delete", "all").returncode, 2)
        self.assertEqual(srv.store("delete", ids[0], "extra").returncode, 2)
        unknown = ids[0][:2] + "0000FF" + ids[0][8:]
        cp = srv.store("requeue", unknown)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)

        # Give up on the last message; it is final now.
        cp = srv.store("delete", ids[2])
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        cp = srv.store("delete", ids[2])
        self.assertEqual(cp.returncode, 1, "second delete: %r" % (cp.stdout + cp.stderr))
        cp = srv.store("requeue", ids[2])
        self.assertEqual(cp.returncode, 1, "requeue of a deleted message: %r" % cp.stdout)

        cp = srv.store("requeue", "all")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        moved = sum(int(n) for n in re.findall(rb"requeued (\d+) messages", cp.stdout))
        self.assertEqual(moved, 2, cp.stdout)
        d = deferred(srv)
        self.assertEqual(sorted(d), sorted(ids[:2]))
        for i in ids[:2]:
            self.assertEqual(d[i].group("next"), "now", d[i].group(0))
            self.assertEqual(d[i].group("attempts"), "1", d[i].group(0))
        # A second requeue all finds nothing left to move.
        cp = srv.store("requeue", "all")
        self.assertEqual(cp.returncode, 0)
        self.assertEqual(sum(int(n) for n in re.findall(rb"requeued (\d+)", cp.stdout)), 0)

        # Restart with a healthy upstream on the same port: delivered at
        # once (not in an hour).
        sink.start(extra=[])
        srv.start()
        wait_for("the requeued messages delivered", lambda: not deferred(srv), timeout=30)
        dumps = wait_for("smtp-sink to dump both messages",
                         lambda: sink.dumps() if len(sink.dumps()) >= 2 else None, timeout=10)
        for k in range(2):
            got = [d for d in dumps if msgs[k][0] in d.message]
            self.assertEqual(len(got), 1, "message %d delivered once: %r" % (k, dumps))
            self.assertEqual(sorted(got[0].rcpt_addrs), sorted(msgs[k][1]))
        self.assertFalse(any(msgs[2][0] in d.message for d in dumps),
                         "the deleted message was sent")
        srv.stop_checked(self)
        self.assertEqual(len(sink.dumps()), 2, "more than the two requeued messages arrived")

    def test_live_requests(self):
        sink = self.soft_rejecting_sink()
        srv, ids = self.start_deferring(sink, self.messages(3))
        pid_path = os.path.join(srv.data_dir, "ringmx.pid")
        if not os.path.exists(pid_path):
            srv.stop_checked(self)
            raise unittest.SkipTest("ringmx does not write DATA_DIR/ringmx.pid yet: the live "
                                    "path cannot be reached; re-run once it does")
        pid = srv.proc.pid
        with open(pid_path) as f:
            self.assertEqual(int(f.read().strip()), pid)
        if not usr1_handled(pid):
            # The tool must refuse rather than kill the gateway with SIGUSR1.
            cp = srv.store("requeue", ids[0])
            self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
            self.assertIn(b"SIGUSR1", cp.stderr)
            self.assertTrue(srv.running(), "ringmx-store killed the gateway")
            control = os.path.join(srv.data_dir, "w%s" % int(ids[0][:2], 16), "control")
            left = [n for n in os.listdir(control) if n.endswith(".req")]
            self.assertEqual(left, [], "a refused request was left behind")
            srv.stop_checked(self)
            raise unittest.SkipTest("ringmx does not handle SIGUSR1 yet (the core wiring of "
                                    "control_apply is missing): live requeue/delete not "
                                    "tested; re-run once it does")

        # requeue ID: attempted again at once (the sink still says 4xx).
        cp = srv.store("requeue", ids[0])
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        wait_for("a second attempt on %s" % ids[0],
                 lambda: int(deferred(srv)[ids[0]].group("attempts")) >= 2, timeout=30)

        # delete ID: gone from the queue for good.
        cp = srv.store("delete", ids[1])
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertNotIn(ids[1], deferred(srv))
        cp = srv.store("delete", ids[1])
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)

        # requeue all: every remaining message attempted again.
        before = {i: int(m.group("attempts")) for i, m in deferred(srv).items()}
        cp = srv.store("requeue", "all")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        wait_for("another attempt on every remaining message",
                 lambda: all(int(deferred(srv)[i].group("attempts")) > n
                             for i, n in before.items()), timeout=30)
        self.assertEqual(sorted(before), sorted([ids[0], ids[2]]))
        self.assertTrue(srv.running())
        srv.stop_checked(self)

        # A request left in the control directory (the gateway stopped
        # before reading it) is applied at the next start.
        attempts = int(deferred(srv)[ids[2]].group("attempts"))
        control = os.path.join(srv.data_dir, "w%d" % int(ids[2][:2], 16), "control")
        os.makedirs(control, exist_ok=True)
        left = os.path.join(control, "0000000000000000-left.req")
        with open(left + ".tmp", "w") as f:
            f.write("requeue %s\n" % ids[2])
        os.rename(left + ".tmp", left)
        srv.start()
        wait_for("the left request read at start", lambda: not os.path.exists(left),
                 timeout=30)
        wait_for("an attempt on %s right after the start" % ids[2],
                 lambda: int(deferred(srv)[ids[2]].group("attempts")) > attempts, timeout=30)
        srv.stop_checked(self)


def main():
    """unittest, then the house exit codes: 1 on any failure, else 77 when a
    test was skipped (its reason is printed), else 0."""
    upstream.require_root()
    result = unittest.main(exit=False, verbosity=2).result
    if not result.wasSuccessful():
        sys.exit(1)
    for test, reason in result.skipped:
        print("e2e: SKIP: %s: %s" % (test.id(), reason))
    sys.exit(h.SKIP_EXIT if result.skipped else 0)


if __name__ == "__main__":
    main()
