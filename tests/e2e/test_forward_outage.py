#!/usr/bin/env python3
"""Forwarding when the upstream misbehaves (Postfix smtp-sink as upstream):

- down, then up: mail accepted while nothing listens on the upstream port
  is deferred, and once smtp-sink starts every message arrives, none twice;
- failover: the first upstream refuses connections, answers the greeting
  with 421, or completes the TCP handshake and never greets; in each case
  the second one receives everything, exactly once;
- 4xx then success: smtp-sink answers RCPT (or DATA) with a 4xx; the
  message is deferred, retried no sooner than retry_min and not much later
  than retry_max, and delivered once the upstream accepts it.
"""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

DELIVERY_TIMEOUT_S = 45.0


def send_batch(testcase, srv, count, prefix):
    """count messages over one connection; returns {token: queue_id}."""
    out = {}
    with srv.conn() as c:
        h.assert_reply(testcase, c.cmd("EHLO outage.client.example"), 250, sent=c.sent)
        for i in range(count):
            token = h.unique_token("%s%d" % (prefix, i))
            body = b"Subject: " + token.encode() + b"\r\n\r\n" + token.encode() + b"\r\n"
            out[token] = h.send_message(testcase, c, body, rcpts=("u%d@%s" % (i, h.DOMAIN),))
        c.cmd("QUIT")
    return out


class ForwardOutage(unittest.TestCase):

    def setUp(self):
        up.require_root()

    def start_gateway(self, ports, **kw):
        srv = h.Server(settings=up.forward_settings(ports, **kw))
        self.addCleanup(srv.cleanup)
        srv.start()
        return srv

    def new_sink(self, port=None, extra=()):
        sink = up.Sink(port=port, extra=extra)
        self.addCleanup(sink.cleanup)
        return sink

    def wait_all(self, sink, sent, srv):
        def done():
            got = sink.subjects()
            return all(t in got for t in sent)

        if not up.wait_for(done, DELIVERY_TIMEOUT_S, 0.2):
            got = sink.subjects()
            missing = [(t, q) for t, q in sent.items() if t not in got]
            self.fail("%d of %d messages not delivered within %.0fs, e.g. %s;\n"
                      "gateway log tail:\n%s" % (len(missing), len(sent), DELIVERY_TIMEOUT_S,
                                                 missing[:3], srv.stderr_text()[-3000:]))
        time.sleep(1.0)  # let a duplicate show up if one is coming
        got = sink.subjects()
        dups = {t: n for t, n in got.items() if t in sent and n > 1}
        self.assertEqual(dups, {}, "messages delivered more than once")
        foreign = [t for t in got if t not in sent]
        self.assertEqual(foreign, [], "the sink got messages nobody sent")

    def test_upstream_down_then_up(self):
        port = h.free_port()
        srv = self.start_gateway([port])
        sent = send_batch(self, srv, 30, "down")
        # nothing listens: connection attempts fail, mail waits in the store
        self.assertTrue(up.wait_for(lambda: up.log_events(srv, "upstream_connect_failed"), 10),
                        "no event=upstream_connect_failed while the upstream is down:\n%s"
                        % srv.stderr_text()[-2000:])
        listed = set(srv.ls_ids())
        self.assertTrue(set(sent.values()) <= listed, "accepted mail is not in the store")
        time.sleep(2.0)
        sink = self.new_sink(port=port)
        sink.start()
        t0 = time.monotonic()
        self.wait_all(sink, sent, srv)
        print("upstream back: all %d delivered within %.1fs (retry_max 2s)"
              % (len(sent), time.monotonic() - t0 - 1.0), file=sys.stderr)
        delivered = {e["id"].upper() for e in up.log_events(srv, "delivery")
                     if e.get("result") == "delivered"}
        self.assertTrue(set(sent.values()) <= delivered)
        h.stop_and_check(srv)

    def test_failover_to_second_upstream(self):
        dead = h.free_port()
        sink = self.new_sink()
        sink.start()
        srv = self.start_gateway([dead, sink.port])
        sent = send_batch(self, srv, 30, "failover")
        self.wait_all(sink, sent, srv)
        failed = up.log_events(srv, "upstream_connect_failed")
        self.assertTrue(any(e.get("upstream") == "127.0.0.1:%d" % dead for e in failed),
                        "the first upstream was never tried: %r" % failed[:5])
        ups = {e.get("upstream") for e in up.log_events(srv, "delivery")
               if e.get("result") == "delivered"}
        self.assertEqual(ups, {"127.0.0.1:%d" % sink.port})
        h.stop_and_check(srv)

    def test_failover_on_421_greeting(self):
        first = self.new_sink(extra=["-Q", "CONNECT"])
        first.start()
        second = self.new_sink()
        second.start()
        srv = self.start_gateway([first.port, second.port])
        sent = send_batch(self, srv, 10, "greet421")
        self.wait_all(second, sent, srv)
        self.assertEqual(first.subjects(), {})
        h.stop_and_check(srv)

    def test_failover_on_silent_upstream(self):
        # the first upstream completes the TCP handshake (kernel backlog)
        # but never greets: upstream_timeout, then the second one
        silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(silent.close)
        silent.bind((h.LOOPBACK4, 0))
        silent.listen(64)
        second = self.new_sink()
        second.start()
        srv = self.start_gateway([silent.getsockname()[1], second.port],
                                 extra=[("upstream_timeout", "2s")])
        t0 = time.monotonic()
        sent = send_batch(self, srv, 10, "silent")
        self.wait_all(second, sent, srv)
        print("silent first upstream: all delivered to the second after %.1fs"
              % (time.monotonic() - t0), file=sys.stderr)
        h.stop_and_check(srv)

    def soft_reject_then_accept(self, command):
        retry_min_s, retry_max_s = 2, 3
        sink = self.new_sink(extra=["-r", command])
        sink.start()
        srv = self.start_gateway([sink.port], retry_min="%ds" % retry_min_s,
                                 retry_max="%ds" % retry_max_s)
        sent = send_batch(self, srv, 1, "soft" + command.lower())
        (token, qid), = sent.items()

        def deferrals():
            return [e for e in up.log_events(srv, "delivery")
                    if e.get("id", "").upper() == qid and e.get("result") == "deferred"]

        first = up.wait_for(deferrals, 20)
        self.assertTrue(first, "no result=deferred for %s after a 4xx to %s:\n%s"
                        % (qid, command, srv.stderr_text()[-3000:]))
        t_first = time.monotonic()
        self.assertTrue(first[0].get("reply", "").startswith("4"), first[0])
        # retried, but not before retry_min
        time.sleep(retry_min_s - 0.7)
        self.assertEqual(len(deferrals()), 1, "retried before retry_min=%ds: %r"
                         % (retry_min_s, deferrals()))
        second = up.wait_for(lambda: len(deferrals()) >= 2 and deferrals(), retry_max_s + 6)
        self.assertTrue(second, "no retry within retry_max (%ds) + slack: %r"
                        % (retry_max_s, deferrals()))
        self.assertGreaterEqual(time.monotonic() - t_first, retry_min_s - 0.7)
        self.assertEqual(sink.subjects(), {}, "a 4xx'ed message reached the sink")
        # the upstream recovers on the same port
        sink.stop()
        sink.start(extra=[])
        self.wait_all(sink, sent, srv)
        done = [e for e in up.log_events(srv, "delivery")
                if e.get("id", "").upper() == qid and e.get("result") == "delivered"]
        self.assertEqual(len(done), 1, done)
        self.assertGreaterEqual(int(done[0].get("attempt", "0")), 3, done[0])
        h.stop_and_check(srv)

    def test_4xx_rcpt_then_success(self):
        self.soft_reject_then_accept("RCPT")

    def test_4xx_data_then_success(self):
        self.soft_reject_then_accept("DATA")


if __name__ == "__main__":
    unittest.main()
