#!/usr/bin/env python3
"""AUTH (RFC 4954) on submission (587-style, STARTTLS) and smtps listeners,
against Python smtplib and a raw TLS socket; the user file is made now with
crypt(3) hashes (SHA-512-crypt, and yescrypt when this Python's crypt has
it):

- AUTH is not offered before TLS on submission and is refused there with
  538 5.7.11; MAIL without AUTH gets 530 5.7.0;
- smtplib login() with PLAIN and LOGIN, over STARTTLS and over smtps; the
  message relays to any domain, arrives as ESMTPSA with the user in the
  store's envelope and in message_accepted;
- a wrong password: 535 5.7.8, logged fail2ban-style with the client
  address; malformed base64 of every length mod 4, cancel (*), and an
  unknown mechanism get their replies and the session goes on;
- auth_fail_limit: the limit-th failure gets 535 then 421 4.7.0 and the
  connection closes; a new connection from that address gets 421 at AUTH;
- on an smtp (port 25) listener AUTH is never offered, and relaying
  without AUTH is refused;
- /metrics counts the attempts by mechanism and result.
"""

import base64
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # noqa: E402

USERS = {"alice": "correct horse", "bob@example.org": "b0b-secret"}
FAIL_LIMIT = 4


def make_cert(d):
    cp = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
         "-days", "30", "-subj", "/CN=" + h.HOSTNAME],
        cwd=d, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    if cp.returncode != 0:
        raise h.StartError("openssl req failed: %s" % cp.stderr.decode("latin-1"))
    return os.path.join(d, "c.pem"), os.path.join(d, "k.pem")


def make_users(d):
    lines = []
    methods = [crypt.METHOD_SHA512]
    if hasattr(crypt, "METHOD_YESCRYPT"):  # not in every Python
        methods.append(crypt.METHOD_YESCRYPT)
    for i, (user, password) in enumerate(sorted(USERS.items())):
        lines.append("%s:%s" % (user, crypt.crypt(password, crypt.mksalt(methods[i % len(methods)]))))
    path = os.path.join(d, "users")
    with open(path, "w") as f:
        f.write("# made by the test\n" + "\n".join(lines) + "\n")
    return path


def client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def b64(data):
    return base64.b64encode(data).decode("ascii")


class TlsConn:
    """A raw SMTP conversation over implicit TLS (smtps)."""

    def __init__(self, port):
        raw = socket.create_connection((h.LOOPBACK4, port), timeout=15)
        self.sock = client_context().wrap_socket(raw)
        self.buf = b""

    def close(self):
        self.sock.close()

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(4096)
                if not data:
                    raise h.Closed("closed after %r" % lines)
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return h.Reply(lines)

    def cmd(self, line):
        self.sock.sendall(line.encode("latin-1") + b"\r\n")
        return self.reply()


class AuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.require_program("openssl")
        cls.dir = tempfile.mkdtemp(prefix="ringmx-auth-")
        cert, key = make_cert(cls.dir)
        users = make_users(cls.dir)
        cls.submission_port = h.free_port()
        cls.smtps_port = h.free_port()
        cls.metrics_port = h.free_port()
        cls.server = h.Server(settings=[
            ("metrics_listen", "%s:%d" % (h.LOOPBACK4, cls.metrics_port)),
            ("tls_cert", cert), ("tls_key", key),
            ("auth_users", users), ("auth_fail_limit", str(FAIL_LIMIT)),
        ], workers=1, extra_lines=[
            "listen = %s:%d submission" % (h.LOOPBACK4, cls.submission_port),
            "listen = %s:%d smtps" % (h.LOOPBACK4, cls.smtps_port)])
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def tearDown(self):
        self.server.check_stderr(self)
        self.assertTrue(self.server.running(), "ringmx exited:\n%s"
                        % self.server.stderr_text()[-3000:])

    def wait_for_log(self, needle, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.server.stderr_text():
                return True
            time.sleep(0.05)
        return False

    def test_submission_needs_tls_then_auth(self):
        with h.SmtpConn(self.submission_port) as c:
            r = c.cmd("EHLO sub.example")
            kw = h.ehlo_keywords(r)
            self.assertIn("STARTTLS", kw)
            self.assertFalse(any(k.startswith("AUTH") for k in kw), r.text)
            h.assert_reply(self, c.cmd("AUTH PLAIN " + b64(b"\0alice\0correct horse")), 538,
                           "5.7.11")
            h.assert_reply(self, c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")

    def test_login_plain_and_login_over_starttls(self):
        for mech in ("PLAIN", "LOGIN"):
            with smtplib.SMTP(h.LOOPBACK4, self.submission_port, timeout=15) as s:
                s.ehlo("sub.example")
                s.starttls(context=client_context())
                s.ehlo("sub.example")
                self.assertIn(mech, s.esmtp_features.get("auth", "").split())
                s.user, s.password = "alice", USERS["alice"]
                code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower()),
                                 initial_response_ok=mech == "PLAIN")
                self.assertEqual(code, 235)
                s.ehlo("sub.example")
                self.assertNotIn("auth", s.esmtp_features, "AUTH offered again after success")
                token = h.unique_token("auth" + mech)
                refused = s.sendmail("alice@example.org", ["someone@elsewhere.example"],
                                     "Subject: %s\r\n\r\nsubmitted\r\n" % token)
                self.assertEqual(refused, {})
        self.assertTrue(self.wait_for_log("auth=alice"))
        ids = self.server.ls_ids()
        self.assertGreaterEqual(len(ids), 2)
        shown = self.server.show(ids[-1]).decode("utf-8", "replace")
        self.assertIn("Auth: alice", shown)
        self.assertIn("Protocol: ESMTPSA", shown)
        self.assertRegex(shown, r"TLS: TLSv1\.[23] \S+")
        self.assertIn("with ESMTPSA", self.server.show_body(ids[-1]).decode("latin-1"))

    def test_smtps_login_user_with_at_sign(self):
        ctx = client_context()
        with smtplib.SMTP_SSL(h.LOOPBACK4, self.smtps_port, timeout=15, context=ctx) as s:
            s.ehlo("smtps.example")
            self.assertNotIn("starttls", s.esmtp_features)
            s.login("bob@example.org", USERS["bob@example.org"])
            refused = s.sendmail("bob@example.org", ["x@y.example"], "Subject: s\r\n\r\nx\r\n")
            self.assertEqual(refused, {})

    def test_wrong_password_logged_and_errors_then_success(self):
        c = TlsConn(self.smtps_port)
        try:
            h.assert_reply(self, c.reply(), 220)
            h.assert_reply(self, c.cmd("EHLO errors.example"), 250)
            # Malformed base64 of every length mod 4, and bad padding.
            for bad in ("A", "AB", "ABC", "AB=C", "A===", "!!!!", "AGFsaWNl AA=="):
                r = c.cmd("AUTH PLAIN " + bad)
                self.assertIn(r.code, (501, 535), r.text)
            h.assert_reply(self, c.cmd("AUTH CRAM-MD5"), 504, "5.5.4")
            h.assert_reply(self, c.cmd("AUTH LOGIN"), 334)
            h.assert_reply(self, c.cmd("*"), 501, "5.7.0")
            r = c.cmd("AUTH PLAIN " + b64(b"\0alice\0wrong one"))
            h.assert_reply(self, r, 535, "5.7.8")
            h.assert_reply(self, c.cmd("AUTH LOGIN " + b64(b"alice")), 334)
            h.assert_reply(self, c.cmd(b64(USERS["alice"].encode())), 235, "2.7.0")
            h.assert_reply(self, c.cmd("MAIL FROM:<alice@example.org>"), 250)
        finally:
            c.close()
        self.assertTrue(self.wait_for_log(
            "event=auth_failed client=127.0.0.1 mechanism=plain result=failure"))

    def test_fail_limit_closes_with_421(self):
        # Its own client address, so the other tests' failures do not count.
        addr = "127.0.0.77"
        raw = socket.create_connection((h.LOOPBACK4, self.smtps_port), timeout=15,
                                       source_address=(addr, 0))
        c = TlsConn.__new__(TlsConn)
        c.sock, c.buf = client_context().wrap_socket(raw), b""
        try:
            h.assert_reply(self, c.reply(), 220)
            h.assert_reply(self, c.cmd("EHLO limit.example"), 250)
            for i in range(FAIL_LIMIT - 1):
                h.assert_reply(self, c.cmd("AUTH PLAIN " + b64(b"\0alice\0guess%d" % i)), 535)
            r = c.cmd("AUTH PLAIN " + b64(b"\0alice\0last guess"))
            self.assertEqual(r.code, 535, r.text)
            r = c.reply()
            self.assertEqual((r.code, r.enhanced), (421, "4.7.0"), r.text)
            with self.assertRaises((h.Closed, ConnectionError, ssl.SSLError)):
                c.reply()
        finally:
            c.close()
        # A new connection from the same address: 421 at AUTH, before any check.
        raw = socket.create_connection((h.LOOPBACK4, self.smtps_port), timeout=15,
                                       source_address=(addr, 0))
        c = TlsConn.__new__(TlsConn)
        c.sock, c.buf = client_context().wrap_socket(raw), b""
        try:
            h.assert_reply(self, c.reply(), 220)
            h.assert_reply(self, c.cmd("EHLO limit.example"), 250)
            r = c.cmd("AUTH PLAIN " + b64(b"\0alice\0" + USERS["alice"].encode()))
            self.assertEqual((r.code, r.enhanced), (421, "4.7.0"), r.text)
        finally:
            c.close()
        self.assertTrue(self.wait_for_log("client=127.0.0.77 mechanism=- result=blocked"))

    def test_port_25_never_offers_auth(self):
        with smtplib.SMTP(h.LOOPBACK4, self.server.port, timeout=15) as s:
            s.ehlo("mx.client.example")
            s.starttls(context=client_context())
            s.ehlo("mx.client.example")
            self.assertNotIn("auth", s.esmtp_features)
            code, _ = s.docmd("AUTH", "PLAIN " + b64(b"\0alice\0correct horse"))
            self.assertEqual(code, 502)
            s.mail("a@client.example")
            code, msg = s.rcpt("someone@elsewhere.example")
            self.assertEqual(code, 554, msg)

    def test_zz_metrics(self):
        with urllib.request.urlopen("http://%s:%d/metrics" % (h.LOOPBACK4, self.metrics_port),
                                    timeout=10) as r:
            text = r.read().decode()
        def value(mech, result):
            for line in text.splitlines():
                if line.startswith('ringmx_auth_attempts_total{mechanism="%s",result="%s"}'
                                   % (mech, result)):
                    return float(line.split()[-1])
            self.fail("no series for %s/%s" % (mech, result))
        self.assertGreaterEqual(value("plain", "success"), 1)
        self.assertGreaterEqual(value("login", "success"), 1)
        self.assertGreaterEqual(value("plain", "failure"), 1)
        self.assertGreaterEqual(value("plain", "malformed"), 1)
        self.assertGreaterEqual(value("login", "cancelled"), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
