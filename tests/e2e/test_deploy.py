"""End-to-end checks of the deployment files in deploy/.

- deploy/ringmx-alerts.yml and deploy/prometheus.yml pass promtool's checks,
  and each alert fires on a synthetic series that should trigger it and stays
  quiet on a healthy one (promtool test rules);
- deploy/ringmx.conf, with only its machine-specific values rewritten (data
  directory, listen and metrics addresses, recipients file, upstreams) to a
  temporary directory and free loopback ports, starts the real gateway, which
  greets on loopback, serves /metrics with every metric the alert rules use,
  and exits 0 on SIGTERM;
- deploy/ringmx.service has no directive systemd does not know
  (systemd-analyze verify; complaints about the absent binary or user are
  expected on a build machine and accepted).

Environment: RINGMX_BIN (the gateway) and RINGMX_SOURCE_DIR (the repository),
both set by ctest. A missing promtool or systemd-analyze skips that test.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

TOOL_TIMEOUT_S = 60


def source_dir():
    path = os.environ.get("RINGMX_SOURCE_DIR")
    if not path:
        path = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    return path


def deploy_path(name):
    return os.path.join(source_dir(), "deploy", name)


def unused_port():
    """A loopback port nobody listens on (bound and closed a moment ago)."""
    return h.free_port(socket.AF_INET)


def parse_conf(text):
    """ringmx.conf text -> list of (key, value) in file order (comments and
    blank lines dropped), with the same key = value syntax ringmx reads."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise AssertionError("ringmx.conf line without '=': %r" % line)
        out.append((key.strip(), value.strip()))
    return out


def rewrite_conf(text, values):
    """Replaces the value of each active `key = value` line whose key is in
    values (a dict key -> list of new values, used in order for repeated
    keys). Comments and every other line stay as written. Returns the new
    text and the dict of how many lines were rewritten per key."""
    pending = {k: list(v) for k, v in values.items()}
    done = {k: 0 for k in values}
    out = []
    for line in text.splitlines():
        m = re.match(r"^(\s*)([a-z_]+)(\s*=\s*)([^#]*?)(\s*(#.*)?)$", line)
        if m and m.group(2) in pending:
            key = m.group(2)
            if not pending[key]:
                raise AssertionError("ringmx.conf has more %s lines than expected" % key)
            line = m.group(1) + key + m.group(3) + pending[key].pop(0) + m.group(5)
            done[key] += 1
        out.append(line)
    return "\n".join(out) + "\n", done


def strip_annotations(text):
    """Alert rules YAML -> the same without the `annotations:` blocks (the
    key line and every following line indented deeper than it)."""
    out = []
    skip_indent = None
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if skip_indent is not None:
            if not line.strip() or indent > skip_indent:
                continue
            skip_indent = None
        if line.strip() == "annotations:":
            skip_indent = indent
            continue
        out.append(line)
    return "\n".join(out) + "\n"


class PromtoolTest(unittest.TestCase):
    def setUp(self):
        self.promtool = shutil.which("promtool")
        if self.promtool is None:
            self.skipTest("promtool is not installed (Debian package prometheus)")

    def run_promtool(self, *args, cwd=None):
        cp = subprocess.run([self.promtool] + list(args), stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=TOOL_TIMEOUT_S,
                            cwd=cwd or os.path.join(source_dir(), "deploy"))
        return cp, (cp.stdout + cp.stderr).decode("utf-8", "replace")

    def test_check_rules(self):
        cp, out = self.run_promtool("check", "rules", deploy_path("ringmx-alerts.yml"))
        self.assertEqual(cp.returncode, 0, out)
        self.assertIn("9 rules found", out)

    def test_check_config(self):
        cp, out = self.run_promtool("check", "config", deploy_path("prometheus.yml"))
        self.assertEqual(cp.returncode, 0, out)
        # the rule file is found through rule_files, relative to the config
        self.assertIn("1 rule files found", out)

    def test_alerts_fire(self):
        """Each alert fires on a series built to trigger it (with its for:
        period elapsed) and not on a healthy one."""
        tmp = tempfile.mkdtemp(prefix="ringmx-deploy-")
        self.addCleanup(shutil.rmtree, tmp, True)
        # promtool compares annotations too: the copy under test drops them
        # (their templates are checked by test_check_rules), keeping the
        # expressions, for: periods and labels exactly as written
        with open(deploy_path("ringmx-alerts.yml")) as f:
            rules = strip_annotations(f.read())
        self.assertEqual(rules.count("- alert: "), 9)
        with open(os.path.join(tmp, "ringmx-alerts.yml"), "w") as f:
            f.write(rules)
        gib = 1024 * 1024 * 1024
        # bad: instance a, healthy: instance b
        series = [
            ('up{job="ringmx",instance="a"}', "0x40"),
            ('up{job="ringmx",instance="b"}', "1x40"),
            ('ringmx_store_bytes{job="ringmx",instance="a"}', "%dx40" % (7 * gib)),
            ('ringmx_store_bytes{job="ringmx",instance="b"}', "%dx40" % (5 * gib)),
            ('ringmx_forward_pending_records{job="ringmx",instance="a"}', "10x40"),
            ('ringmx_forward_pending_records{job="ringmx",instance="b"}', "10x40"),
            ('ringmx_forward_attempts_total{job="ringmx",instance="a",result="success"}',
             "5x40"),
            ('ringmx_forward_attempts_total{job="ringmx",instance="b",result="success"}',
             "5+3x40"),
            ('ringmx_forward_oldest_pending_age_seconds{job="ringmx",instance="a"}',
             "7200+60x40"),
            ('ringmx_forward_oldest_pending_age_seconds{job="ringmx",instance="b"}', "60x40"),
            ('ringmx_upstream_up{job="ringmx",instance="a",upstream="192.0.2.10:25"}',
             "0x40"),
            ('ringmx_upstream_up{job="ringmx",instance="b",upstream="192.0.2.10:25"}',
             "1x40"),
            ('ringmx_fsync_disabled{job="ringmx",instance="a"}', "1x40"),
            ('ringmx_fsync_disabled{job="ringmx",instance="b"}', "0x40"),
            ('ringmx_store_sealed_damaged_regions{job="ringmx",instance="a"}', "2x40"),
            ('ringmx_store_sealed_damaged_regions{job="ringmx",instance="b"}', "0x40"),
            # promtool's clock starts at 0: a's certificate expires in 5
            # days, b's in 60
            ('ringmx_tls_cert_expiry_timestamp_seconds{job="ringmx",instance="a",'
             'cert="/etc/ringmx/mx.pem"}', "%dx40" % (5 * 86400)),
            ('ringmx_tls_cert_expiry_timestamp_seconds{job="ringmx",instance="b",'
             'cert="/etc/ringmx/mx.pem"}', "%dx40" % (60 * 86400)),
        ]
        # fsync latency histogram: a's observations all land above 0.1s,
        # b's all below 0.01s (cumulative buckets, 10 per minute)
        for inst, slow in (("a", True), ("b", False)):
            for le in ("0.01", "0.1", "+Inf"):
                grows = (le == "+Inf") if slow else True
                series.append(('ringmx_store_fsync_latency_seconds_bucket{job="ringmx",'
                               'instance="%s",le="%s"}' % (inst, le),
                               "0+10x40" if grows else "0x40"))

        def alert(name, inst, labels=None, present=True):
            exp = ""
            if present:
                lab = {"job": "ringmx", "instance": inst}
                lab.update(labels or {})
                body = "\n".join("              %s: %s" % (k, quote(v))
                                 for k, v in sorted(lab.items()))
                exp = "\n          - exp_labels:\n%s" % body
            return ("      - eval_time: 30m\n        alertname: %s\n        exp_alerts:%s\n"
                    % (name, exp if present else " []"))

        def quote(v):
            return '"%s"' % v

        sev = {"critical": {"severity": "critical"}, "warning": {"severity": "warning"}}
        checks = [
            alert("RingmxDown", "a", sev["critical"]),
            alert("RingmxStoreFilling", "a", sev["warning"]),
            alert("RingmxOldestPendingOld", "a", sev["warning"]),
            alert("RingmxNotForwarding", "a", sev["warning"]),
            alert("RingmxUpstreamDown", "a",
                  dict(sev["warning"], upstream="192.0.2.10:25")),
            alert("RingmxFsyncSlow", "a", sev["warning"]),
            alert("RingmxFsyncDisabled", "a", sev["critical"]),
            alert("RingmxStoreCorruption", "a", sev["critical"]),
            alert("RingmxTlsCertificateExpiring", "a",
                  dict(sev["warning"], cert="/etc/ringmx/mx.pem")),
        ]
        lines = ["rule_files:", "  - ringmx-alerts.yml", "evaluation_interval: 1m",
                 "tests:", "  - interval: 1m", "    input_series:"]
        for name, values in series:
            lines.append("      - series: '%s'" % name)
            lines.append("        values: '%s'" % values)
        lines.append("    alert_rule_test:")
        text = "\n".join(lines) + "\n" + "".join(checks)
        test_path = os.path.join(tmp, "ringmx-alerts-test.yml")
        with open(test_path, "w") as f:
            f.write(text)
        cp, out = self.run_promtool("test", "rules", test_path, cwd=tmp)
        self.assertEqual(cp.returncode, 0, "%s\n--- test file:\n%s" % (out, text))

        # and the same expectations must fail when the healthy node is
        # expected to alert too (the test above cannot pass vacuously)
        wrong = text.replace('instance: "a"', 'instance: "b"')
        with open(test_path, "w") as f:
            f.write(wrong)
        cp, out = self.run_promtool("test", "rules", test_path, cwd=tmp)
        self.assertNotEqual(cp.returncode, 0,
                            "promtool accepted alerts on the healthy instance:\n" + out)
        for name in ("RingmxDown", "RingmxStoreFilling", "RingmxOldestPendingOld",
                     "RingmxNotForwarding",
                     "RingmxUpstreamDown", "RingmxFsyncSlow", "RingmxFsyncDisabled",
                     "RingmxStoreCorruption", "RingmxTlsCertificateExpiring"):
            self.assertIn(name, out, "promtool did not report %s as failing" % name)


class ConfigStartsTest(unittest.TestCase):
    def test_example_config_serves(self):
        with open(deploy_path("ringmx.conf")) as f:
            original = f.read()
        settings = parse_conf(original)
        keys = [k for k, _ in settings]
        self.assertEqual(keys.count("listen"), 2, "expected IPv4 and IPv6 listen lines")
        hostname = dict(settings)["hostname"]

        smtp_port = h.free_port()
        listen = ["%s:%d" % (h.LOOPBACK4, smtp_port)]
        if h.ipv6_loopback_available():
            listen.append("[%s]:%d" % (h.LOOPBACK6, h.free_port(socket.AF_INET6)))
        else:
            listen.append("%s:%d" % (h.LOOPBACK4, h.free_port()))
        metrics_port = h.free_port()
        upstream = "%s:%d" % (h.LOOPBACK4, unused_port())

        srv = h.Server(settings=[("hostname", hostname)], listen=listen, raw_config="")
        self.addCleanup(srv.cleanup)
        recipients = os.path.join(srv.tmp, "recipients")
        domains = dict(settings)["accept_domains"].split()
        with open(recipients, "w") as f:
            f.write("".join("@%s\n" % d for d in domains))
        text, done = rewrite_conf(original, {
            "data_dir": [srv.data_dir],
            "listen": listen,
            "metrics_listen": ["%s:%d" % (h.LOOPBACK4, metrics_port)],
            "recipients_file": [recipients],
            "upstream": [upstream],
        })
        self.assertEqual(done, {"data_dir": 1, "listen": 2, "metrics_listen": 1,
                                "recipients_file": 1, "upstream": 1},
                         "lines rewritten per key")
        # every other line exactly as written
        before = [kv for kv in settings if kv[0] not in done]
        after = [kv for kv in parse_conf(text) if kv[0] not in done]
        self.assertEqual(before, after)
        with open(srv.config_path, "w") as f:
            f.write(text)

        srv.start()
        try:
            c = srv.conn()
            try:
                h.assert_reply(self, c.banner, 220)
                self.assertTrue(c.banner.text.startswith("220 %s ESMTP" % hostname),
                                c.banner.text)
                r = c.cmd("EHLO client.example.net")
                h.assert_reply(self, r, 250, sent=c.sent)
                size = h.ehlo_keywords(r).get("SIZE")
                self.assertEqual(size, [str(25 * 1024 * 1024)],
                                 "SIZE from max_message_size = 25M")
                h.assert_reply(self, c.cmd("MAIL FROM:<a@client.example.net>"), 250,
                               sent=c.sent)
                # accept_domains and the recipients file are in force
                h.assert_reply(self, c.cmd("RCPT TO:<user@%s>" % domains[0]), 250,
                               "2.1.5", sent=c.sent)
                r = c.cmd("RCPT TO:<user@elsewhere.example>")
                self.assertEqual(r.code // 100, 5, r.text)
                c.cmd("QUIT")
            finally:
                c.close()
            if len(listen) == 2 and listen[1].startswith("["):
                c6 = srv.conn(host=h.LOOPBACK6, port=h._split_listen(listen[1])[1])
                try:
                    h.assert_reply(self, c6.banner, 220)
                finally:
                    c6.close()
            metrics = self.scrape(metrics_port)
            for name in ("ringmx_store_bytes", "ringmx_forward_pending_records",
                         "ringmx_forward_attempts_total", "ringmx_upstream_up",
                         "ringmx_store_fsync_latency_seconds_bucket",
                         "ringmx_fsync_disabled"):
                self.assertRegex(metrics, r"(?m)^%s[{ ]" % name,
                                 "/metrics lacks %s, which ringmx-alerts.yml uses" % name)
            self.assertRegex(metrics, r"(?m)^ringmx_fsync_disabled 0$")
        finally:
            srv.stop_checked(self)

    def test_example_tls_lines(self):
        """The commented TLS and submission example lines, uncommented with
        a certificate, key and user file made here, are a valid
        configuration: ringmx --check-config loads the certificate and the
        users and prints the listeners with their modes."""
        h.require_program("openssl")
        with open(deploy_path("ringmx.conf")) as f:
            original = f.read()
        keys = ("listen", "tls_cert", "tls_key", "tls_min_version",
                "tls_handshake_timeout", "auth_users", "auth_fail_limit")
        pattern = re.compile(r"^#(%s) = " % "|".join(keys))
        examples = [line for line in original.splitlines() if pattern.match(line)]
        for key in keys[1:]:
            self.assertTrue(any(line.startswith("#%s = " % key) for line in examples),
                            "no commented %s example line" % key)
        text = "\n".join(line[1:] if pattern.match(line) else line
                         for line in original.splitlines()) + "\n"
        tmp = tempfile.mkdtemp(prefix="ringmx-deploy-tls-")
        self.addCleanup(shutil.rmtree, tmp, True)
        crt, key = os.path.join(tmp, "mx.crt"), os.path.join(tmp, "mx.key")
        cp = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
             "-days", "30", "-subj", "/CN=mx1.example.org"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=TOOL_TIMEOUT_S)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        cp = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=b"secret\n",
                            capture_output=True, timeout=TOOL_TIMEOUT_S)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        users = os.path.join(tmp, "users")
        with open(users, "w") as f:
            f.write("alice:%s\n" % cp.stdout.decode().strip())
        recipients = os.path.join(tmp, "recipients")
        with open(recipients, "w") as f:
            f.write("@example.org\n")
        text, done = rewrite_conf(text, {
            "data_dir": [os.path.join(tmp, "data")], "recipients_file": [recipients],
            "tls_cert": [crt], "tls_key": [key], "auth_users": [users]})
        self.assertEqual(done, {"data_dir": 1, "recipients_file": 1, "tls_cert": 1,
                                "tls_key": 1, "auth_users": 1})
        conf = os.path.join(tmp, "ringmx.conf")
        with open(conf, "w") as f:
            f.write(text)
        cp = subprocess.run([h.ringmx_bin(), "--check-config", "-c", conf],
                            stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=TOOL_TIMEOUT_S)
        out = cp.stdout.decode("utf-8", "replace")
        self.assertEqual(cp.returncode, 0, cp.stderr.decode("utf-8", "replace"))
        for line in examples:
            if line.startswith("#listen = "):
                self.assertIn(line[1:] + "\n", out)
        self.assertIn("tls_cert = %s\n" % crt, out)

    def scrape(self, port):
        with socket.create_connection((h.LOOPBACK4, port), timeout=h.SOCKET_TIMEOUT_S) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:200])
        return body.decode("utf-8", "replace")


class SystemdUnitTest(unittest.TestCase):
    def test_unit_directives_known(self):
        tool = shutil.which("systemd-analyze")
        if tool is None:
            self.skipTest("systemd-analyze is not installed (Debian package systemd)")
        tmp = tempfile.mkdtemp(prefix="ringmx-deploy-")
        self.addCleanup(shutil.rmtree, tmp, True)
        unit = os.path.join(tmp, "ringmx.service")
        shutil.copy(deploy_path("ringmx.service"), unit)
        cp = subprocess.run([tool, "verify", unit], stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=TOOL_TIMEOUT_S)
        out = (cp.stdout + cp.stderr).decode("utf-8", "replace")
        bad = [l for l in out.splitlines()
               if re.search(r"Unknown (key|section|lvalue)|Failed to parse|"
                            r"Invalid|is not valid|ignoring", l, re.I)]
        self.assertEqual(bad, [], "systemd-analyze verify:\n" + out)

        # the directives the deployment relies on are present as written
        with open(unit) as f:
            text = f.read()
        for line in ("Type=simple", "ExecStart=/usr/local/bin/ringmx -c /etc/ringmx/ringmx.conf",
                     "KillSignal=SIGTERM", "TimeoutStopSec=60", "LimitMEMLOCK=infinity",
                     "AmbientCapabilities=CAP_NET_BIND_SERVICE", "StateDirectory=ringmx"):
            self.assertIn("\n" + line + "\n", text)
        self.assertNotRegex(text, r"(?m)^SystemCallFilter=",
                            "a system call filter would have to allow io_uring_*")


if __name__ == "__main__":
    unittest.main()
