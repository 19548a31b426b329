#!/usr/bin/env python3
"""ringmx behind HAProxy (mode tcp, send-proxy-v2), as deployed: a private
haproxy with its own config file, bound to 127.0.0.1 only, started and
stopped here, in front of a listener with proxy=required and
proxy_trusted = 127.0.0.1. Clients bind 127.0.0.2 and up, so the address
that HAProxy's header carries differs from HAProxy's own.

Through it: smtplib and swaks sessions, STARTTLS (TLS passes through the
balancer), pipelining, BDAT, the size limit, 421 4.7.0 at
max_connections_per_ip (counted per client, not per balancer); Received:
and the logs name the client. HAProxy's health checks (check-send-proxy:
v2 LOCAL headers) reach ringmx without an info log line and without
counting against limits.
"""

import os
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import proxy_headers as ph  # noqa: E402

HAPROXY = h.require_program("haproxy")
SWAKS = h.require_program("swaks")
OPENSSL = h.require_program("openssl")
CHECK_INTERVAL_MS = 300


def make_cert(d):
    cp = subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", "h.key", "-out", "h.crt", "-days", "30",
         "-subj", "/CN=" + h.HOSTNAME], cwd=d, stdin=subprocess.DEVNULL,
        capture_output=True, timeout=60)
    if cp.returncode != 0:
        raise h.StartError("openssl req failed: %s" % cp.stderr.decode("latin-1"))
    return os.path.join(d, "h.crt"), os.path.join(d, "h.key")


class HAProxy:
    """One private haproxy in the foreground (-db), tcp mode, one frontend."""

    def __init__(self, tmp, backend_port):
        self.port = h.free_port()
        self.config = os.path.join(tmp, "haproxy.cfg")
        self.log_path = os.path.join(tmp, "haproxy.log")
        with open(self.config, "w") as f:
            f.write("global\n"
                    "    maxconn 256\n"
                    "defaults\n"
                    "    mode tcp\n"
                    "    timeout connect 5s\n"
                    "    timeout client 60s\n"
                    "    timeout server 60s\n"
                    "frontend smtp_in\n"
                    "    bind 127.0.0.1:%d\n"
                    "    default_backend ringmx\n"
                    "backend ringmx\n"
                    "    option smtpchk EHLO check.haproxy.example\n"
                    "    server mx1 127.0.0.1:%d send-proxy-v2 check check-send-proxy "
                    "inter %dms\n" % (self.port, backend_port, CHECK_INTERVAL_MS))
        cp = subprocess.run([HAPROXY, "-c", "-f", self.config], capture_output=True,
                            stdin=subprocess.DEVNULL, timeout=30)
        if cp.returncode != 0:
            raise h.StartError("haproxy -c: %s" % (cp.stdout + cp.stderr).decode("latin-1"))
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.config],
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise h.StartError("haproxy exited: %s" % self.output())
            try:
                c = h.SmtpConn(self.port, timeout=5.0)
            except (OSError, h.Closed):
                time.sleep(0.1)
                continue
            try:
                if c.banner.code == 220:
                    c.cmd("QUIT")
                    return
            finally:
                c.close()
            time.sleep(0.1)
        raise h.StartError("no banner through haproxy: %s" % self.output())

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("latin-1")[-3000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


class HAProxyFrontTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ringmx-e2e-haproxy-")
        crt, key = make_cert(cls.tmp)
        cls.plain = h.free_port()
        cls.proxied = h.free_port()
        cls.mport = h.free_port()
        settings = [
            ("listen", "127.0.0.1:%d smtp proxy=required" % cls.proxied),
            ("proxy_trusted", "127.0.0.1"),
            ("limits_exempt", "none"),
            ("max_connections_per_ip", "2"),
            ("max_message_size", "20000"),
            ("log_level", "debug"),  # the probes' own lines are at debug
            ("tls_cert", crt), ("tls_key", key),
            ("metrics_listen", "127.0.0.1:%d" % cls.mport),
        ]
        cls.server = h.Server(settings=settings, listen=["127.0.0.1:%d" % cls.plain])
        cls.haproxy = None
        try:
            cls.server.start()
            cls.haproxy = HAProxy(cls.tmp, cls.proxied)
            cls.haproxy.wait_ready()
        except BaseException:
            if cls.haproxy:
                cls.haproxy.stop()
            cls.server.cleanup()
            raise
        cls.port = cls.haproxy.port

    @classmethod
    def tearDownClass(cls):
        cls.haproxy.stop()
        h.stop_and_check(cls.server)
        subprocess.run(["rm", "-rf", cls.tmp], check=False)

    # ---- helpers

    def mark(self):
        return ph.log_mark(self.server)

    def wait_log(self, since, pattern, timeout=10.0):
        return ph.wait_log(self, self.server, since, pattern, timeout)

    def conn(self, source):
        """A raw session through haproxy from source; banner read."""
        c = ph.connect(self.port, source=source)
        try:
            c.banner = c.reply()
            h.assert_reply(self, c.banner, 220)
        except BaseException:
            c.close()
            raise
        return c

    def check_stored(self, qid, helo, ip, proto="ESMTP"):
        received, rest = h.split_received(self.server.show_body(qid))
        h.check_received(self, received, helo, ip, qid, proto=proto)
        return rest

    def check_accepted_log(self, since, qid, ip):
        ln = self.wait_log(since, r"(?i)event=message_accepted\b.*%s" % qid)
        self.assertRegex(ln, r"\bclient=%s\b" % re.escape(ip))

    # ---- sessions through the balancer

    def test_smtplib_session(self):
        since = self.mark()
        token = h.unique_token("hap")
        with smtplib.SMTP("127.0.0.1", self.port, timeout=15,
                          source_address=("127.0.0.2", 0)) as s:
            s.ehlo("smtplib.example")
            s.sendmail("a@client.example", ["user@" + h.DOMAIN],
                       "Subject: %s\r\n\r\nthrough haproxy\r\n" % token)
        ln = self.wait_log(since, r"event=message_accepted\b.*client=127\.0\.0\.2\b")
        qid = re.search(r"queue_id=([0-9A-Fa-f]{16})", ln).group(1)
        rest = self.check_stored(qid, "smtplib.example", "127.0.0.2")
        self.assertIn(token.encode(), rest)
        self.wait_log(since, r"event=connection_open\b.*client=127\.0\.0\.2\b")

    def test_swaks_session(self):
        since = self.mark()
        cp = subprocess.run(
            [SWAKS, "--server", "127.0.0.1", "--port", str(self.port),
             "--local-interface", "127.0.0.4", "--helo", "swaks.example",
             "--from", "s@client.example", "--to", "user@" + h.DOMAIN,
             "--timeout", "15"], capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        out = cp.stdout.decode("latin-1")
        self.assertEqual(cp.returncode, 0, out + cp.stderr.decode("latin-1"))
        m = re.search(r"queued as ([0-9A-Fa-f]{16})", out)
        self.assertIsNotNone(m, out)
        self.check_stored(m.group(1), "swaks.example", "127.0.0.4")
        self.check_accepted_log(since, m.group(1), "127.0.0.4")

    def test_starttls_through_the_balancer(self):
        since = self.mark()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", self.port, timeout=15,
                          source_address=("127.0.0.5", 0)) as s:
            s.ehlo("tls.example")
            self.assertTrue(s.has_extn("starttls"))
            code, _ = s.starttls(context=ctx)
            self.assertEqual(code, 220)
            s.ehlo("tls.example")
            s.sendmail("t@client.example", ["user@" + h.DOMAIN], "Subject: tls\r\n\r\nx\r\n")
        self.wait_log(since, r"event=tls_established\b.*client=127\.0\.0\.5\b")
        ln = self.wait_log(since, r"event=message_accepted\b.*client=127\.0\.0\.5\b")
        self.assertRegex(ln, r"\btls=(?!no\b)")
        qid = re.search(r"queue_id=([0-9A-Fa-f]{16})", ln).group(1)
        self.check_stored(qid, "tls.example", "127.0.0.5", proto="ESMTPS")

    def test_pipelining(self):
        c = self.conn("127.0.0.6")
        try:
            h.assert_reply(self, c.cmd("EHLO pipe.example"), 250, sent=c.sent)
            group = (b"MAIL FROM:<p@client.example>\r\nRCPT TO:<a@example.com>\r\n"
                     b"RCPT TO:<x@elsewhere.example>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            c.send(group)
            h.assert_reply(self, c.reply(), 250, "2.1.0", sent=group)
            h.assert_reply(self, c.reply(), 250, "2.1.5", sent=group)
            h.assert_reply(self, c.reply(), 554, "5.7.1", sent=group)
            h.assert_reply(self, c.reply(), 250, "2.1.5", sent=group)
            h.assert_reply(self, c.reply(), 354, sent=group)
            body = b"Subject: pipelined\r\n\r\nthrough haproxy\r\n"
            burst = h.dot_stuff(body) + b"QUIT\r\n"
            c.send(burst)
            qid = h.queued_id(self, c.reply(), burst)
            h.assert_reply(self, c.reply(), 221, sent=burst)
        finally:
            c.close()
        self.assertEqual(self.check_stored(qid, "pipe.example", "127.0.0.6"), body)

    def test_bdat(self):
        body = b"Subject: bdat\r\n\r\n" + b"".join(b"line %d\r\n" % i for i in range(300))
        c = self.conn("127.0.0.7")
        try:
            h.assert_reply(self, c.cmd("EHLO bdat.example"), 250, sent=c.sent)
            h.assert_reply(self, c.cmd("MAIL FROM:<b@client.example>"), 250, "2.1.0")
            h.assert_reply(self, c.cmd("RCPT TO:<user@example.com>"), 250, "2.1.5")
            parts = [body[:7], body[7:1500]]
            for p in parts:
                c.send(b"BDAT %d\r\n" % len(p) + p)
                h.assert_reply(self, c.reply(), 250, "2.0.0", sent=c.sent[-200:])
            last = body[1500:]
            c.send(b"BDAT %d LAST\r\n" % len(last) + last)
            qid = h.queued_id(self, c.reply(), c.sent[-200:])
        finally:
            c.close()
        self.assertEqual(self.check_stored(qid, "bdat.example", "127.0.0.7"), body)

    def test_size_limit(self):
        c = self.conn("127.0.0.8")
        try:
            h.assert_reply(self, c.cmd("EHLO size.example"), 250, sent=c.sent)
            h.assert_reply(self, c.cmd("MAIL FROM:<s@client.example>"), 250, "2.1.0")
            h.assert_reply(self, c.cmd("RCPT TO:<user@example.com>"), 250, "2.1.5")
            h.assert_reply(self, c.cmd("DATA"), 354)
            payload = h.dot_stuff(b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 300)
            c.send(payload)
            h.assert_reply(self, c.reply(), 552, "5.3.4", sent=payload)
            h.assert_reply(self, c.cmd("NOOP"), 250, "2.0.0")
            r = c.cmd("MAIL FROM:<s@client.example> SIZE=50000")
            h.assert_reply(self, r, 552, sent=c.sent)
        finally:
            c.close()

    def test_connections_per_ip_counts_the_client(self):
        before = ph.metric(self.mport, 'ringmx_connections_rejected_total{reason="per_ip"}')
        held = []
        try:
            held.append(self.conn("127.0.0.9"))
            held.append(self.conn("127.0.0.9"))
            c = ph.connect(self.port, source="127.0.0.9")
            try:
                h.assert_reply(self, c.reply(), 421, "4.7.0", sent=b"")
                self.assertTrue(c.is_closed(5.0))
            finally:
                c.close()
            # another client through the same balancer is served meanwhile
            other = self.conn("127.0.0.10")
            held.append(other)
            h.assert_reply(self, other.cmd("EHLO other.example"), 250, sent=other.sent)
        finally:
            for c in held:
                c.close()
        after = ph.metric(self.mport, 'ringmx_connections_rejected_total{reason="per_ip"}')
        self.assertEqual(after, before + 1)

    def test_health_checks_are_quiet_probes(self):
        accepted = 'ringmx_connections_accepted_total'
        before = ph.metric(self.mport, accepted)
        per_ip = ph.metric(self.mport, 'ringmx_connections_rejected_total{reason="per_ip"}')
        proxy = ph.metric(self.mport, 'ringmx_connections_rejected_total{reason="proxy"}')
        since = self.mark()
        time.sleep(CHECK_INTERVAL_MS * 8 / 1000.0)
        # the checks arrived (nothing else connects meanwhile)...
        self.assertGreaterEqual(ph.metric(self.mport, accepted) - before, 3)
        # ...were neither refused nor malformed...
        self.assertEqual(ph.metric(self.mport,
                                   'ringmx_connections_rejected_total{reason="per_ip"}'), per_ip)
        self.assertEqual(ph.metric(self.mport,
                                   'ringmx_connections_rejected_total{reason="proxy"}'), proxy)
        # ...were LOCAL probes (HAProxy's smtpchk: banner, EHLO, QUIT)...
        local = ph.log_lines(self.server, since, "proxy_local")
        self.assertGreaterEqual(len(local), 3, "no LOCAL probes logged at debug")
        # ...and left no log line above debug
        # (a close of an earlier test's session may still be logged)
        noisy = [ln for ln in ph.log_lines(self.server, since)
                 if not re.search(r"\blevel=debug\b", ln) and
                 (re.search(r"=127\.0\.0\.1\b", ln) or "event=connection_open" in ln)]
        self.assertEqual(noisy, [], "health checks logged above debug")
        # and HAProxy saw the server up: a session still goes through
        c = self.conn("127.0.0.11")
        c.close()


if __name__ == "__main__":
    unittest.main()
