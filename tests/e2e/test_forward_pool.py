#!/usr/bin/env python3
"""The forwarder's pool of upstream connections (Postfix smtp-sink as the
upstream relay, one worker so every connection belongs to one pool):

- a connection closed after FORWARD_IDLE_QUIT_MS (10 s) without mail
  leaves its slot free for the next message: with upstream_connections = 1
  the mail sent after the idle close is delivered;
- the pool grows while a backlog persists (a relay that takes a second
  per DATA, several messages queued: more than one connection, never more
  than upstream_connections) and every connection it opened is closed once
  it has been idle, whichever slot it was in;
- a trickle (the next message only after the last was delivered) keeps one
  connection: the pool does not grow without a backlog.
"""

import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

DELIVERY_TIMEOUT_S = 30.0
IDLE_QUIT_S = 10.0          # FORWARD_IDLE_QUIT_MS
IDLE_CLOSE_SLACK_S = 6.0    # the tick that notices it, QUIT and its reply


class ForwardPool(unittest.TestCase):

    def setUp(self):
        up.require_root()
        self.ss = h.require_program("ss")

    def sink(self, extra=()):
        s = up.Sink(extra=list(extra))
        self.addCleanup(s.cleanup)
        s.start()
        return s

    def gateway(self, port, conns):
        srv = h.Server(settings=up.forward_settings(
            [port], extra=[("upstream_connections", str(conns))]), workers=1)
        self.addCleanup(srv.cleanup)
        srv.start()
        return srv

    def upstream_conns(self, sink):
        out = subprocess.run([self.ss, "-Htn", "state", "established", "dport", "= :%d"
                              % sink.port], capture_output=True, text=True).stdout
        return len([line for line in out.splitlines() if line.strip()])

    def delivered(self, sink, token):
        return any(token.encode() in d.message for d in sink.dumps())

    def send(self, srv, tokens):
        with srv.conn() as c:
            h.assert_reply(self, c.cmd("EHLO pool.client.example"), 250, sent=c.sent)
            for t in tokens:
                h.send_message(self, c, b"Subject: " + t.encode() + b"\r\n\r\nx\r\n")

    def wait_delivered(self, sink, tokens):
        """Polls until every token is at the sink; returns the most upstream
        connections seen meanwhile."""
        peak = 0
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            peak = max(peak, self.upstream_conns(sink))
            if all(self.delivered(sink, t) for t in tokens):
                return peak
            time.sleep(0.05)
        self.fail("not delivered: %s" % [t for t in tokens if not self.delivered(sink, t)])

    def wait_no_conns(self, sink):
        deadline = time.monotonic() + IDLE_QUIT_S + IDLE_CLOSE_SLACK_S
        while time.monotonic() < deadline:
            if self.upstream_conns(sink) == 0:
                return
            time.sleep(0.2)
        self.fail("%d idle upstream connection(s) still open %.0f s after the last "
                  "delivery" % (self.upstream_conns(sink), IDLE_QUIT_S + IDLE_CLOSE_SLACK_S))

    def test_slot_reused_after_idle_close(self):
        sink = self.sink()
        srv = self.gateway(sink.port, 1)
        first = h.unique_token("before-idle")
        self.send(srv, [first])
        self.wait_delivered(sink, [first])
        self.wait_no_conns(sink)  # the one connection was closed for idleness
        second = h.unique_token("after-idle")
        self.send(srv, [second])
        self.wait_delivered(sink, [second])
        h.stop_and_check(srv)

    def test_pool_grows_with_backlog_and_closes_idle(self):
        sink = self.sink(["-w", "1"])  # a second per DATA: mail queues up
        srv = self.gateway(sink.port, 3)
        tokens = [h.unique_token("backlog%d" % i) for i in range(6)]
        self.send(srv, tokens)
        peak = self.wait_delivered(sink, tokens)
        print("upstream connections: peak %d (limit 3)" % peak, file=sys.stderr)
        self.assertGreaterEqual(peak, 2, "the pool did not grow with a backlog")
        self.assertLessEqual(peak, 3)
        self.wait_no_conns(sink)
        h.stop_and_check(srv)

    def test_trickle_keeps_one_connection(self):
        sink = self.sink()
        srv = self.gateway(sink.port, 4)
        peak = 0
        for i in range(5):
            t = h.unique_token("trickle%d" % i)
            self.send(srv, [t])
            peak = max(peak, self.wait_delivered(sink, [t]))
            time.sleep(0.2)
        print("upstream connections: peak %d" % peak, file=sys.stderr)
        self.assertEqual(peak, 1)
        h.stop_and_check(srv)


if __name__ == "__main__":
    unittest.main()
