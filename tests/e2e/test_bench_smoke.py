#!/usr/bin/env python3
"""ringmx-bench against a real ringmx: a 2-second run with --json - must exit
0, print JSON that parses, report messages > 0 and errors == 0, and the
store (read by ringmx-store stats) must hold at least as many messages as
the bench says were acknowledged. Also: bad options exit 2 and --tls is
refused; lock-step sessions, one per message, at a fixed rate; refused
recipients counted by reply code; idle sessions kept past the server's idle
timeout by NOOPs (and ended by it without them). The bench binary is <build dir>/bench/ringmx-bench, the build dir
being the parent of RINGMX_BIN.
"""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

RUN_S = 2
BENCH_TIMEOUT_S = 30


def bench_bin():
    build_dir = os.path.dirname(os.path.abspath(h.ringmx_bin()))
    path = os.path.join(build_dir, "bench", "ringmx-bench")
    if not os.access(path, os.X_OK):
        sys.stderr.write("e2e: %s is not built (target ringmx-bench)\n" % path)
        sys.exit(2)
    return path


class BenchSmokeTest(unittest.TestCase):

    def test_two_second_run_is_counted_in_the_store(self):
        srv = h.Server(settings=[("max_connections", "200")])
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop_checked, self)
        cmd = [bench_bin(), "--server", "%s:%d" % (h.LOOPBACK4, srv.port),
               "--conns", "8", "--duration", str(RUN_S), "--size", "1k:70,10k:30",
               "--rcpts", "2", "--to", "user@" + h.DOMAIN, "--idle-conns", "4",
               "--pid", str(srv.proc.pid), "--json", "-"]
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=BENCH_TIMEOUT_S)
        err = cp.stderr.decode("utf-8", "replace")
        self.assertEqual(cp.returncode, 0, "ringmx-bench exited %d; stderr:\n%s"
                         % (cp.returncode, err))
        try:
            res = json.loads(cp.stdout.decode("utf-8"))
        except ValueError as e:
            self.fail("--json - printed no JSON (%s): %r" % (e, cp.stdout[:500]))
        self.assertGreater(res["messages"], 0, res)
        self.assertEqual(res["errors"], 0, res)
        self.assertEqual(res["errors_by_code"], {}, res)
        self.assertEqual(res["connection_failures"], 0, res)
        self.assertGreater(res["msgs_per_s"], 0, res)
        lat = res["latency_txn_us"]
        self.assertEqual(lat["count"], res["messages"], res)
        self.assertTrue(0 < lat["p50"] <= lat["p99"] <= lat["max"], lat)
        self.assertIn("server_cpu_s", res)
        # the text summary went to stderr, not into the JSON
        self.assertIn("msgs/s", err)
        stats = srv.stats()
        stored = int(stats.get("messages", "0"))
        self.assertGreaterEqual(stored, res["messages"],
                                "store holds %d messages, bench reported %d acknowledged"
                                % (stored, res["messages"]))

    def test_lock_step_new_connections_at_a_fixed_rate(self):
        srv = h.Server(settings=[("max_connections", "200")])
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop_checked, self)
        before = int(srv.stats().get("messages", "0"))
        res, err = self.run_bench(srv, ["--conns", "4", "--messages", "60", "--rate", "100",
                                        "--pipelining", "off", "--new-conn-per-message",
                                        "--rcpts", "3"])
        self.assertEqual(res["messages"], 60, res)
        self.assertEqual(res["errors"], 0, res)
        self.assertGreaterEqual(res["connects"], 60, res)
        self.assertGreater(res["conns_per_s"], 0, res)
        self.assertEqual(res["schedule_lag_us"]["count"], 60, res)
        # 60 messages at 100/s cannot take much less than 0.59 s
        self.assertGreater(res["elapsed_s"], 0.55, res)
        after = int(srv.stats().get("messages", "0"))
        self.assertGreaterEqual(after - before, 60)

    def test_refused_recipients_are_counted_by_code(self):
        srv = h.Server()
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop_checked, self)
        cmd = [bench_bin(), "--server", "%s:%d" % (h.LOOPBACK4, srv.port), "--conns", "2",
               "--messages", "20", "--to", "user@not-served.example", "--json", "-"]
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=BENCH_TIMEOUT_S)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        res = json.loads(cp.stdout.decode("utf-8"))
        self.assertEqual(res["messages"], 0, res)
        self.assertEqual(res["errors"], 20, res)
        codes = res["errors_by_code"]
        self.assertEqual(sum(codes.values()), 20, res)
        self.assertTrue(all(k.startswith("5") for k in codes), res)

    def test_idle_sessions_outlive_the_idle_timeout_only_with_noop(self):
        srv = h.Server(settings=[("idle_timeout", "1s"), ("command_timeout", "1s")])
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop_checked, self)
        load = ["--conns", "2", "--duration", "2.5", "--idle-conns", "6"]
        res, _ = self.run_bench(srv, load + ["--idle-noop", "0.25"])
        self.assertEqual(res["connection_failures"], 0, res)
        self.assertEqual(res["connects"], 8, res)
        # the control: without NOOPs the server ends the idle sessions
        cmd = [bench_bin(), "--server", "%s:%d" % (h.LOOPBACK4, srv.port), "--json", "-"] + load
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=BENCH_TIMEOUT_S)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        res = json.loads(cp.stdout.decode("utf-8"))
        self.assertGreaterEqual(res["connection_failures"], 6, res)
        self.assertEqual(res["errors"], 0, res)

    def run_bench(self, srv, args):
        cmd = [bench_bin(), "--server", "%s:%d" % (h.LOOPBACK4, srv.port), "--json", "-"] + args
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=BENCH_TIMEOUT_S)
        err = cp.stderr.decode("utf-8", "replace")
        self.assertEqual(cp.returncode, 0, "ringmx-bench %r exited %d; stderr:\n%s"
                         % (args, cp.returncode, err))
        return json.loads(cp.stdout.decode("utf-8")), err

    def test_bad_options_exit_2(self):
        for args in (["--conns", "5"],                          # no --server
                     ["--server", "127.0.0.1:1", "--size", "1k:50,2k:40"],
                     ["--server", "127.0.0.1:1", "--pipelining", "maybe"],
                     ["--server", "127.0.0.1:1", "--messages", "5", "--duration", "1"],
                     ["--server", "127.0.0.1:1", "--tls"]):
            cp = subprocess.run([bench_bin()] + args, stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=BENCH_TIMEOUT_S)
            self.assertEqual(cp.returncode, 2, "%r exited %d: %s"
                             % (args, cp.returncode, cp.stderr))
            self.assertTrue(cp.stderr.strip(), "%r said nothing on stderr" % args)


if __name__ == "__main__":
    unittest.main()
