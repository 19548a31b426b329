#!/usr/bin/env python3
"""Inflow control (in_flow_delay, in_flow_backlog) against ringmx-bench as
the client (20 sessions sending as fast as the 250s come) and Postfix's
smtp-sink as the upstream, one worker with one upstream connection, so
acceptance outruns forwarding:

- with in_flow_delay = 1s and in_flow_backlog = 200, the backlog
  (ringmx_forward_pending_records, sampled every 50 ms) stays near the
  watermark for the whole run, the held 250s are counted in
  ringmx_flow_held_total, every message still gets its 250 (the bench
  counts no error), and every acknowledged message reaches the upstream;
- with in_flow_delay = 0 (off) the same load drives the backlog far past
  the watermark (the control: the check can fail);
- with the upstream down nothing is delivered, so nothing is held: the
  store takes the mail at full speed.
"""

import json
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

CONNS = 20
LOAD_S = 3
BACKLOG_MAX = 200
DELIVERY_TIMEOUT_S = 60.0


class FlowControlTest(unittest.TestCase):
    def run_load(self, in_flow_delay, upstream_up=True):
        """Runs the bench for LOAD_S against a gateway forwarding to a sink;
        returns (server, metrics port, the bench's JSON, the largest backlog
        sampled)."""
        sink = up.Sink()
        self.addCleanup(sink.cleanup)
        if upstream_up:
            sink.start()
        metrics_port = h.free_port()
        settings = up.forward_settings([sink.port]) + [
            ("metrics_listen", "%s:%d" % (h.LOOPBACK4, metrics_port)),
            ("upstream_connections", "1"), ("in_flow_backlog", str(BACKLOG_MAX)),
            ("in_flow_delay", in_flow_delay), ("store_max_bytes", "1G"),
            ("segment_size", "16M")]
        server = h.Server(settings=settings, workers=1)
        self.addCleanup(server.cleanup)
        server.start()
        samples = []
        done = threading.Event()

        def sample():
            while not done.is_set():
                pending = h.metric_value(h.scrape_metrics(metrics_port), "ringmx_forward_pending_records")
                if pending is not None:
                    samples.append(pending)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cp = subprocess.run([h.bench_bin(), "--server", "%s:%d" % (h.LOOPBACK4, server.port),
                             "--conns", str(CONNS), "--duration", str(LOAD_S), "--size", "1k",
                             "--to", "user@" + h.DOMAIN, "--json", "-", "--allow-errors"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        done.set()
        sampler.join(timeout=10)
        self.assertEqual(cp.returncode, 0, cp.stderr.decode()[-2000:])
        result = json.loads(cp.stdout)
        return server, metrics_port, result, max(samples or [0])

    def test_paced_to_delivery(self):
        server, metrics_port, result, backlog_max = self.run_load("1s")
        self.assertEqual(result["errors"], 0, result)
        text = h.scrape_metrics(metrics_port)
        held = h.metric_value(text, "ringmx_flow_held_total")
        self.assertGreater(held, 0, "no 250 was held")
        # The watermark, one message per session past it, and a group
        # commit's worth answered before the loop saw the watermark crossed.
        self.assertLessEqual(backlog_max, BACKLOG_MAX + 3 * CONNS,
                             "backlog %d with inflow control on" % backlog_max)
        accepted = h.metric_value(text, "ringmx_messages_accepted_total")
        self.assertGreater(accepted, 5 * BACKLOG_MAX, "too little load to mean anything")

        def all_forwarded():
            t = h.scrape_metrics(metrics_port)
            return (h.metric_value(t, "ringmx_forward_pending_records") == 0 and
                    h.metric_value(t, 'ringmx_forward_attempts_total{result="success"}') == accepted)
        self.assertTrue(up.wait_for(all_forwarded, DELIVERY_TIMEOUT_S, 0.2),
                        "not every acknowledged message reached the upstream")
        server.stop_checked(self)
        print("paced: %d messages acknowledged in %d s, backlog at most %d, %d 250s held"
              % (accepted, LOAD_S, backlog_max, held), file=sys.stderr)

    def test_without_it_the_backlog_grows(self):
        server, _, result, backlog_max = self.run_load("0s")
        self.assertEqual(result["errors"], 0, result)
        self.assertGreater(backlog_max, 5 * BACKLOG_MAX,
                           "backlog only %d without inflow control: the load does not "
                           "outrun the upstream, so the paced test proves nothing"
                           % backlog_max)
        print("unpaced: %d messages in %d s, backlog up to %d"
              % (result["messages"], LOAD_S, backlog_max), file=sys.stderr)
        server.kill9()  # the backlog is not wanted

    def test_relay_down_is_not_paced(self):
        server, metrics_port, result, backlog_max = self.run_load("1s", upstream_up=False)
        self.assertEqual(result["errors"], 0, result)
        self.assertEqual(h.metric_value(h.scrape_metrics(metrics_port), "ringmx_flow_held_total"), 0)
        self.assertGreater(backlog_max, 5 * BACKLOG_MAX)
        server.kill9()


if __name__ == "__main__":
    unittest.main(verbosity=2)
