#!/usr/bin/env python3
"""bench/compare/scale.py, the figures behind issue 14's latency target:

- the time-weighted quantile of a histogram weights each observation by its
  own duration: one long commit among many short ones owns most of the time
  spent committing, so it sets the time-weighted p99 while the p99 by count
  stays short; with every observation in one bucket both agree; an empty
  histogram has none.
- MetricsWatch against a real ringmx (1 MiB segments, one worker, ringmx-
  bench at a fixed rate of 64 KiB messages, so several segments fill): it
  sees the segment gauge rise, and every acknowledged message is counted
  once, inside a rollover window or outside.
"""

import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "bench", "compare"))
import ringmx_harness as h  # noqa: E402
import measure  # noqa: E402
import scale  # noqa: E402

INF = float("inf")
MESSAGES = 150
RATE = 100            # messages per second: about 1.5 s of load
SIZE = "64k"          # 150 x 64 KiB fill about nine 1 MiB segments


class TimeWeightedTest(unittest.TestCase):

    def test_one_long_commit_sets_the_time_weighted_p99(self):
        # 99 commits of at most 1 ms, one between 1 s and 2.5 s
        buckets = [(0.001, 99.0), (0.0025, 99.0), (1.0, 99.0), (2.5, 100.0), (INF, 100.0)]
        self.assertLessEqual(measure.histogram_quantile(0.99, buckets), 0.001)
        tw = scale.time_weighted_quantile(0.99, buckets)
        # weights: 99 x 0.5 ms = 49.5 ms, 1 x 1.75 s; rank 0.99 x 1799.5 ms
        self.assertAlmostEqual(tw, 1.0 + 1.5 * (0.99 * 1799.5 - 49.5) / 1750.0, places=6)
        self.assertGreater(tw, 1.0)

    def test_one_bucket_agrees_with_the_count(self):
        buckets = [(0.001, 0.0), (0.0025, 40.0), (INF, 40.0)]
        for q in (0.5, 0.9, 0.99):
            self.assertAlmostEqual(scale.time_weighted_quantile(q, buckets),
                                   measure.histogram_quantile(q, buckets), places=9)

    def test_empty(self):
        self.assertIsNone(scale.time_weighted_quantile(0.99, []))
        self.assertIsNone(scale.time_weighted_quantile(0.99, [(0.001, 0.0), (INF, 0.0)]))

    def test_gauge(self):
        text = ("# TYPE ringmx_store_segments gauge\nringmx_store_segments 7\n"
                "ringmx_store_segments_other 9\n")
        self.assertEqual(scale.gauge(text, "ringmx_store_segments"), 7.0)
        self.assertIsNone(scale.gauge(text, "ringmx_store_bytes"))


class RolloverWatchTest(unittest.TestCase):

    def setUp(self):
        build_dir = os.path.dirname(os.path.abspath(h.ringmx_bin()))
        self.bench = os.path.join(build_dir, "bench", "ringmx-bench")
        if not os.access(self.bench, os.X_OK):
            self.fail("%s is not built (target ringmx-bench)" % self.bench)
        self.mport = h.free_port()
        self.srv = h.Server(settings=[("metrics_listen", "127.0.0.1:%d" % self.mport),
                                      ("segment_size", "1M"), ("max_message_size", "256k"),
                                      ("max_recipients", "10")], workers=1)
        self.addCleanup(self.srv.cleanup)
        self.srv.start()

    def test_rollovers_seen_and_every_ack_counted_once(self):
        first = measure.scrape(self.mport)
        watch = scale.MetricsWatch(self.mport).start()
        try:
            cp = subprocess.run(
                [self.bench, "--server", "127.0.0.1:%d" % self.srv.port, "--conns", "4",
                 "--messages", str(MESSAGES), "--rate", str(RATE), "--size", SIZE,
                 "--from", "a@example.org", "--to", "user@%s" % h.DOMAIN],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
            # the gauge is refreshed on the workers' tick: let one more pass
            watch._stop.wait(0.5)
        finally:
            watch.stop()
        self.assertEqual(cp.returncode, 0, cp.stderr.decode("utf-8", "replace"))
        last = measure.scrape(self.mport)
        acks = measure.histogram_delta(
            measure.histogram_buckets(last, scale.MetricsWatch.ACK),
            measure.histogram_buckets(first, scale.MetricsWatch.ACK))
        self.assertEqual(acks[-1][1], MESSAGES)
        r = watch.rollovers()
        self.assertEqual(r["roll_scrape_errors"], 0)
        self.assertGreaterEqual(r["roll_rises"], 3, r)
        self.assertGreater(r["roll_ack_count"], 0, r)
        self.assertEqual(r["roll_ack_count"] + r["steady_ack_count"], MESSAGES, r)
        self.assertGreater(r["roll_time_share"], 0.0)
        self.assertLess(r["roll_time_share"], 1.0)
        self.srv.stop_checked(self)


if __name__ == "__main__":
    unittest.main()
