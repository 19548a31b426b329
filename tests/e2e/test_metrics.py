#!/usr/bin/env python3
"""The metrics endpoint of a live gateway: known SMTP traffic (smtplib and a
raw session) shows up exactly in /metrics, the exposition passes `promtool
check metrics`, a real Prometheus on loopback scrapes it and returns the
counter through its HTTP API, /healthz and /readyz answer (readyz turns 503
as soon as a drain starts), and bad requests get 404/405."""

import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

MESSAGES = 5


def http_get(port, path, method="GET", timeout=10):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


class MetricsTest(unittest.TestCase):

    def start(self, extra=()):
        self.mport = h.free_port()
        srv = h.Server(settings=[("metrics_listen", "127.0.0.1:%d" % self.mport)] + list(extra))
        self.addCleanup(srv.cleanup)
        srv.start()
        return srv

    def send_traffic(self, srv):
        """MESSAGES messages through smtplib, then one raw session with a
        refused recipient. Returns the commands the raw session sent."""
        for i in range(MESSAGES):
            with smtplib.SMTP("127.0.0.1", srv.port, timeout=15) as s:
                s.ehlo("metrics.example")
                msg = "Subject: m%d\r\n\r\nbody %s\r\n" % (i, h.unique_token("m"))
                s.sendmail("a@client.example", ["user@" + h.DOMAIN], msg)
        c = srv.conn()
        h.assert_reply(self, c.cmd("EHLO raw.example"), 250)
        h.assert_reply(self, c.cmd("MAIL FROM:<a@client.example>"), 250, "2.1.0")
        h.assert_reply(self, c.cmd("RCPT TO:<someone@elsewhere.example>"), 554, "5.7.1")
        h.assert_reply(self, c.cmd("QUIT"), 221)
        c.close()

    def scrape(self):
        status, body, headers = http_get(self.mport, "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("version=0.0.4", headers.get("Content-Type", ""))
        return body.decode()

    def wait_for(self, pred, what, timeout=15):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = h.metric_samples(self.scrape())
            if pred(last):
                return last
            time.sleep(0.2)
        self.fail("%s never held; last scrape: %r" % (what, {
            k: v for k, v in (last or {}).items() if "accepted" in k or "commands" in k}))

    def test_counters_match_traffic_and_promtool_accepts(self):
        srv = self.start()
        # The harness's readiness probe is a connection too: count from here.
        base = self.wait_for(lambda m: m.get("ringmx_connections_active") == 0,
                             "no connection open before the traffic")
        self.send_traffic(srv)
        # The raw session's close is seen asynchronously: wait for the gauge.
        m = self.wait_for(lambda m: m.get("ringmx_connections_active") == 0,
                          "connections_active back to 0")
        def delta(key):
            return m[key] - base.get(key, 0)
        self.assertEqual(delta("ringmx_connections_accepted_total"), MESSAGES + 1)
        self.assertEqual(delta("ringmx_messages_accepted_total"), MESSAGES)
        self.assertEqual(delta("ringmx_recipients_accepted_total"), MESSAGES)
        self.assertEqual(delta('ringmx_recipients_rejected_total{reason="relay_denied"}'), 1)
        self.assertEqual(delta('ringmx_smtp_commands_total{command="mail"}'), MESSAGES + 1)
        self.assertEqual(delta('ringmx_smtp_commands_total{command="rcpt"}'), MESSAGES + 1)
        self.assertEqual(delta('ringmx_smtp_commands_total{command="data"}'), MESSAGES)
        self.assertEqual(delta('ringmx_smtp_commands_total{command="quit"}'), MESSAGES + 1)
        self.assertEqual(delta('ringmx_smtp_replies_total{code="554"}'), 1)
        self.assertEqual(delta('ringmx_smtp_replies_total{code="354"}'), MESSAGES)
        self.assertEqual(delta("ringmx_smtp_ack_latency_seconds_count"), MESSAGES)
        self.assertEqual(delta("ringmx_smtp_message_size_bytes_count"), MESSAGES)
        self.assertGreaterEqual(m["ringmx_store_fsync_latency_seconds_count"], 1)
        self.assertGreater(m["ringmx_received_bytes_total"], 0)
        self.assertEqual(m["ringmx_fsync_disabled"], 0)
        self.assertEqual(m["ringmx_forward_pending_records"], MESSAGES)  # no upstream
        # nothing leaves without an upstream: the oldest message ages
        sent_at = time.monotonic()
        aged = self.wait_for(
            lambda m: m.get("ringmx_forward_oldest_pending_age_seconds", 0) >= 2,
            "oldest pending age reaching 2s", timeout=20)
        self.assertLessEqual(aged["ringmx_forward_oldest_pending_age_seconds"],
                             time.monotonic() - sent_at + 30)
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool (Debian package prometheus) is not installed")
        p = subprocess.run([promtool, "check", "metrics"], input=self.scrape().encode(),
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        srv.stop_checked(self)

    def test_health_routes_and_errors(self):
        srv = self.start()
        self.assertEqual(http_get(self.mport, "/healthz")[0], 200)
        self.assertEqual(http_get(self.mport, "/readyz")[0], 200)
        self.assertEqual(http_get(self.mport, "/nothing-here")[0], 404)
        status, _, headers = http_get(self.mport, "/metrics", method="POST")
        self.assertEqual(status, 405)
        self.assertIn("GET", headers.get("Allow", ""))
        status, body, _ = http_get(self.mport, "/metrics", method="HEAD")
        self.assertEqual((status, body), (200, b""))
        srv.stop_checked(self)

    def test_readyz_turns_503_when_draining(self):
        srv = self.start(extra=[("shutdown_grace", "10s")])
        c = srv.conn()
        h.assert_reply(self, c.cmd("EHLO drain.example"), 250)
        h.assert_reply(self, c.cmd("MAIL FROM:<a@client.example>"), 250, "2.1.0")
        srv.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            status = http_get(self.mport, "/readyz")[0]
            if status == 503:
                break
            time.sleep(0.05)
        self.assertEqual(status, 503, "readyz did not turn 503 during the drain")
        self.assertEqual(http_get(self.mport, "/healthz")[0], 200)
        h.assert_reply(self, c.cmd("QUIT"), 221)
        c.close()
        self.assertEqual(srv.wait_exit(20), 0, srv.stderr_text()[-2000:])

    def test_real_prometheus_reads_the_counter(self):
        prometheus = shutil.which("prometheus")
        if prometheus is None:
            self.skipTest("prometheus (Debian package prometheus) is not installed")
        srv = self.start()
        self.send_traffic(srv)
        tmp = tempfile.mkdtemp(prefix="ringmx-prom-")
        self.addCleanup(shutil.rmtree, tmp, True)
        pport = h.free_port()
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: ringmx\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % self.mport)
        with open(os.path.join(tmp, "prometheus.log"), "wb") as log:
            proc = subprocess.Popen(
                [prometheus, "--config.file=" + os.path.join(tmp, "prometheus.yml"),
                 "--storage.tsdb.path=" + os.path.join(tmp, "data"),
                 "--web.listen-address=127.0.0.1:%d" % pport],
                stdout=log, stderr=subprocess.STDOUT)

        def stop_prometheus():
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.addCleanup(stop_prometheus)
        query = "/api/v1/query?query=ringmx_messages_accepted_total"
        deadline = time.monotonic() + 60
        value = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body, _ = http_get(pport, query, timeout=5)
            except OSError:
                time.sleep(0.5)
                continue
            if status == 200:
                data = json.loads(body)
                result = data.get("data", {}).get("result", [])
                if result:
                    value = float(result[0]["value"][1])
                    if value == MESSAGES:
                        break
            time.sleep(0.5)
        with open(os.path.join(tmp, "prometheus.log"), "rb") as log:
            tail = log.read()[-2000:].decode(errors="replace")
        self.assertEqual(value, MESSAGES, "Prometheus never reported the counter; log:\n" + tail)
        srv.stop_checked(self)


if __name__ == "__main__":
    unittest.main(verbosity=2)
