#!/usr/bin/env python3
"""TLS on the server side, against real clients; certificates made now with
openssl req -x509:

- STARTTLS on an smtp listener: Python smtplib starttls() (STARTTLS offered
  before, not after; mail accepted as ESMTPS), openssl s_client -starttls
  smtp, swaks --tls;
- smtps (implicit TLS): swaks --tlsc and smtplib SMTP_SSL get the banner
  under TLS; a cleartext client gets nothing;
- SNI: the second certificate for its name, the first for any other;
- a TLS 1.1 client is refused (tls_failed logged with its address);
- STARTTLS injection (CVE-2011-0411): STARTTLS and RSET in one write: after
  the handshake nothing answers the RSET, and the new EHLO has no STARTTLS;
- a client that stalls its handshake is closed at tls_handshake_timeout;
- renegotiation is refused; tls_min_version = 1.3 refuses a TLS 1.2 client;
- /metrics: each certificate's expiry, handshakes by result and version.
"""

import os
import re
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

SECOND_NAME = "second.e2e.test"


def make_cert(d, name, cn, days=30):
    cp = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", name + ".key", "-out",
         name + ".crt", "-days", str(days), "-subj", "/CN=" + cn, "-addext",
         "subjectAltName=DNS:" + cn],
        cwd=d, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    if cp.returncode != 0:
        raise h.StartError("openssl req failed: %s" % cp.stderr.decode("latin-1"))
    return os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")


def client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_cn(sock):
    """The CN of the certificate the server presented."""
    der = sock.getpeercert(binary_form=True)
    cp = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                        input=der, capture_output=True, timeout=30)
    return cp.stdout.decode().strip()


def wait_for_log(server, needle, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in server.stderr_text():
            return True
        time.sleep(0.05)
    return False


class TlsServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for prog in ("openssl", "swaks"):
            h.require_program(prog)
        cls.certs = tempfile.mkdtemp(prefix="ringmx-tls-")
        cls.first = make_cert(cls.certs, "first", h.HOSTNAME)
        cls.second = make_cert(cls.certs, "second", SECOND_NAME)
        cls.smtps_port = h.free_port()
        cls.metrics_port = h.free_port()
        cls.server = h.Server(settings=[
            ("metrics_listen", "%s:%d" % (h.LOOPBACK4, cls.metrics_port)),
            ("tls_cert", cls.first[0]), ("tls_key", cls.first[1]),
            ("tls_cert", cls.second[0]), ("tls_key", cls.second[1]),
            ("tls_handshake_timeout", "2s"),
        ], workers=1, extra_lines=["listen = %s:%d smtps" % (h.LOOPBACK4, cls.smtps_port)])
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        shutil.rmtree(cls.certs, ignore_errors=True)

    def tearDown(self):
        self.server.check_stderr(self)
        self.assertTrue(self.server.running(), "ringmx exited:\n%s"
                        % self.server.stderr_text()[-3000:])

    def test_smtplib_starttls(self):
        with smtplib.SMTP(h.LOOPBACK4, self.server.port, timeout=15) as s:
            s.ehlo("tls.client.example")
            self.assertTrue(s.has_extn("starttls"))
            code, _ = s.starttls(context=client_context())
            self.assertEqual(code, 220)
            self.assertIn(s.sock.version(), ("TLSv1.2", "TLSv1.3"))
            s.ehlo("tls.client.example")
            self.assertFalse(s.has_extn("starttls"), "STARTTLS offered again under TLS")
            refused = s.sendmail("a@client.example", ["postmaster@" + h.DOMAIN],
                                 "Subject: tls\r\n\r\nover TLS\r\n")
            self.assertEqual(refused, {})
        self.assertTrue(wait_for_log(self.server, "proto=ESMTPS"))
        self.assertIn("event=tls_established", self.server.stderr_text())

    def test_openssl_s_client_starttls(self):
        # One command per write: EHLO ends a pipelined group (RFC 2920).
        p = subprocess.Popen(
            ["openssl", "s_client", "-starttls", "smtp", "-connect",
             "%s:%d" % (h.LOOPBACK4, self.server.port), "-servername", h.HOSTNAME,
             "-ign_eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for line in (b"EHLO s-client.example\r\n", b"QUIT\r\n"):
                time.sleep(1.0)
                p.stdin.write(line)
                p.stdin.flush()
            stdout, _ = p.communicate(timeout=30)
        finally:
            p.kill()
            p.wait()
        out = stdout.decode("latin-1")
        self.assertIn("Protocol  : TLSv1.3", out)
        self.assertRegex(out, r"250-%s" % h.HOSTNAME.replace(".", r"\."))
        self.assertIn("221 2.0.0", out)
        ehlo_after = out[out.index("250-" + h.HOSTNAME):]
        self.assertNotIn("STARTTLS", ehlo_after.split("221")[0])

    def test_swaks_tls(self):
        cp = subprocess.run(
            ["swaks", "--server", h.LOOPBACK4, "--port", str(self.server.port), "--tls",
             "--from", "a@client.example", "--to", "postmaster@" + h.DOMAIN,
             "--helo", "swaks.client.example", "--timeout", "20"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        out = cp.stdout.decode("latin-1")
        self.assertEqual(cp.returncode, 0, out + cp.stderr.decode("latin-1"))
        self.assertIn("TLS started", out)
        self.assertRegex(out, r"<~  250 2\.0\.0 Ok: queued as")

    def test_swaks_tlsc_smtps(self):
        cp = subprocess.run(
            ["swaks", "--server", h.LOOPBACK4, "--port", str(self.smtps_port), "--tlsc",
             "--quit-after", "EHLO", "--helo", "swaks.client.example", "--timeout", "20"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        out = cp.stdout.decode("latin-1")
        self.assertEqual(cp.returncode, 0, out + cp.stderr.decode("latin-1"))
        self.assertIn("TLS started", out)
        self.assertIn("<~  220 %s ESMTP ringmx" % h.HOSTNAME, out)
        self.assertNotIn("STARTTLS", out.split("~> EHLO")[1])

    def test_smtps_smtplib_and_cleartext_client(self):
        with smtplib.SMTP_SSL(h.LOOPBACK4, self.smtps_port, timeout=15,
                              context=client_context()) as s:
            code, _ = s.ehlo("ssl.client.example")
            self.assertEqual(code, 250)
            self.assertFalse(s.has_extn("starttls"))
        # A client that waits for a banner in clear gets none; its SMTP
        # command is no ClientHello, so the connection is closed.
        with socket.create_connection((h.LOOPBACK4, self.smtps_port), timeout=10) as raw:
            raw.settimeout(1.0)
            with self.assertRaises(socket.timeout):
                raw.recv(100)
            raw.settimeout(10.0)
            raw.sendall(b"EHLO plain.client.example\r\n")
            data = raw.recv(100)
            self.assertFalse(data.startswith(b"220") or data.startswith(b"250"), data)

    def test_sni_picks_certificate(self):
        for name, want in ((SECOND_NAME, SECOND_NAME), (h.HOSTNAME, h.HOSTNAME),
                           ("other.e2e.test", h.HOSTNAME), (None, h.HOSTNAME)):
            with smtplib.SMTP(h.LOOPBACK4, self.server.port, timeout=15) as s:
                s.ehlo("sni.client.example")
                if name is None:
                    s.starttls(context=client_context())
                else:
                    # smtplib sends SNI from the host it connected to; wrap by hand.
                    s.putcmd("STARTTLS")
                    code, _ = s.getreply()
                    self.assertEqual(code, 220)
                    s.sock = client_context().wrap_socket(s.sock, server_hostname=name)
                    s.file = None
                self.assertIn("CN = " + want, peer_cn(s.sock), "SNI %r" % name)
                s.ehlo("sni.client.example")
        self.assertIn('sni=' + SECOND_NAME, self.server.stderr_text())

    def test_tls11_refused(self):
        cp = subprocess.run(
            ["openssl", "s_client", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-starttls",
             "smtp", "-connect", "%s:%d" % (h.LOOPBACK4, self.server.port)],
            input=b"QUIT\r\n", capture_output=True, timeout=60)
        out = cp.stdout.decode("latin-1") + cp.stderr.decode("latin-1")
        self.assertIn("Cipher is (NONE)", out)  # no TLS 1.1 session came up
        self.assertNotIn("New, TLSv1.1", out)
        self.assertTrue(wait_for_log(self.server, "event=tls_failed"), out)
        self.assertRegex(self.server.stderr_text(),
                         r"event=tls_failed worker=\d+ client=127\.0\.0\.1 reason=\w+")

    def test_renegotiation_refused(self):
        """A TLS 1.2 client asking to renegotiate (s_client's R) gets no
        new handshake: the session ends, nothing more is answered."""
        p = subprocess.Popen(
            ["openssl", "s_client", "-tls1_2", "-starttls", "smtp", "-connect",
             "%s:%d" % (h.LOOPBACK4, self.server.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            for line in (b"EHLO reneg.client.example\r\n", b"R\n", b"NOOP\r\n"):
                time.sleep(1.0)
                try:
                    p.stdin.write(line)
                    p.stdin.flush()
                except BrokenPipeError:
                    break
            stdout, _ = p.communicate(timeout=30)
        finally:
            p.kill()
            p.wait()
        out = stdout.decode("latin-1")
        self.assertIn("Protocol  : TLSv1.2", out)
        self.assertIn("RENEGOTIATING", out)
        self.assertNotIn("250 2.0.0 Ok", out.split("RENEGOTIATING", 1)[1])

    def test_ehlo_starttls_rset_in_one_write(self):
        """EHLO, STARTTLS and RSET in one write: EHLO must end its pipelined
        group (RFC 2920 3.1), so the session answers 554 5.5.0 and closes;
        neither STARTTLS nor the RSET is ever answered, and no handshake can
        carry the injected RSET into TLS."""
        with socket.create_connection((h.LOOPBACK4, self.server.port), timeout=15) as raw:
            f = raw.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220 "))
            raw.sendall(b"EHLO inject.client.example\r\nSTARTTLS\r\nRSET\r\n")
            rest = f.read()  # up to the close
        self.assertEqual(rest, b"554 5.5.0 Protocol synchronization error\r\n", rest)

    def test_starttls_injection(self):
        """STARTTLS and RSET in one write: the RSET is never answered, in
        clear or under TLS; the client starts over with EHLO."""
        with socket.create_connection((h.LOOPBACK4, self.server.port), timeout=15) as raw:
            f = raw.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220 "))
            raw.sendall(b"EHLO inject.client.example\r\n")
            while True:
                line = f.readline()
                self.assertTrue(line.startswith(b"250"), line)
                if line.startswith(b"250 "):
                    break
            raw.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@client.example>\r\n")
            self.assertEqual(f.readline(), b"220 2.0.0 Ready to start TLS\r\n")
            f.close()
            tls = client_context().wrap_socket(raw, server_hostname=h.HOSTNAME)
            tls.settimeout(1.5)
            with self.assertRaises(socket.timeout):
                data = tls.recv(1000)
                self.fail("answered after the handshake: %r" % data)
            tls.settimeout(15)
            tls.sendall(b"EHLO inject.client.example\r\n")
            reply = b""
            while not reply.endswith(b"\r\n") or b"\n250 " not in b"\n" + reply:
                chunk = tls.recv(4096)
                self.assertTrue(chunk, "closed before the EHLO reply")
                reply += chunk
            self.assertTrue(reply.startswith(b"250-" + h.HOSTNAME.encode()), reply)
            self.assertNotIn(b"STARTTLS", reply)
            tls.sendall(b"MAIL FROM:<a@client.example>\r\n")
            self.assertTrue(tls.recv(1000).startswith(b"250 "))
            tls.sendall(b"QUIT\r\n")
            self.assertTrue(tls.recv(1000).startswith(b"221 "))

    def test_handshake_timeout(self):
        """A client that says STARTTLS and then nothing is closed, without
        a reply, after tls_handshake_timeout (2s here)."""
        with socket.create_connection((h.LOOPBACK4, self.server.port), timeout=15) as raw:
            f = raw.makefile("rb")
            f.readline()
            raw.sendall(b"EHLO slow.client.example\r\n")
            while not f.readline().startswith(b"250 "):
                pass
            raw.sendall(b"STARTTLS\r\n")
            self.assertEqual(f.readline(), b"220 2.0.0 Ready to start TLS\r\n")
            start = time.monotonic()
            self.assertEqual(f.read(), b"")  # closed, nothing more sent
            waited = time.monotonic() - start
            self.assertGreater(waited, 1.5)
            self.assertLess(waited, 10.0)
        self.assertTrue(wait_for_log(self.server, "reason=timeout"))

    def test_metrics(self):
        """The expiry gauge says each certificate's notAfter; handshakes
        are counted by result and version."""
        served_cert = None
        with smtplib.SMTP(h.LOOPBACK4, self.server.port, timeout=15) as s:
            s.ehlo("metrics.client.example")
            s.starttls(context=client_context())
            served_cert = s.sock.version()
        self.assertEqual(served_cert, "TLSv1.3")
        with urllib.request.urlopen("http://%s:%d/metrics" % (h.LOOPBACK4, self.metrics_port),
                                    timeout=15) as r:
            body = r.read().decode()
        for crt, _ in (self.first, self.second):
            cp = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-enddate"],
                                capture_output=True, timeout=30)
            end = cp.stdout.decode().strip().split("=", 1)[1]
            not_after = int(ssl.cert_time_to_seconds(end))
            self.assertIn('ringmx_tls_cert_expiry_timestamp_seconds{cert="%s"} %d'
                          % (crt, not_after), body)
        m = re.search(r'^ringmx_tls_handshakes_total\{result="full",version="TLSv1.3"\} (\d+)$',
                      body, re.M)
        self.assertTrue(m and int(m.group(1)) >= 1, body)


class TlsMinVersionTest(unittest.TestCase):
    """tls_min_version = 1.3: a client that offers at most TLS 1.2 is
    refused; a TLS 1.3 client is served."""

    def test_tls12_refused_under_min_13(self):
        h.require_program("openssl")
        d = tempfile.mkdtemp(prefix="ringmx-tls13-")
        server = h.Server(settings=[("tls_cert", make_cert(d, "only", h.HOSTNAME)[0]),
                                    ("tls_key", os.path.join(d, "only.key")),
                                    ("tls_min_version", "1.3")], workers=1)
        try:
            server.start()
            old = client_context()
            old.maximum_version = ssl.TLSVersion.TLSv1_2
            with smtplib.SMTP(h.LOOPBACK4, server.port, timeout=15) as s:
                s.ehlo("old.client.example")
                with self.assertRaises((ssl.SSLError, OSError, smtplib.SMTPException)):
                    s.starttls(context=old)
            self.assertTrue(wait_for_log(server, "reason=protocol_version"),
                            server.stderr_text()[-2000:])
            with smtplib.SMTP(h.LOOPBACK4, server.port, timeout=15) as s:
                s.ehlo("new.client.example")
                s.starttls(context=client_context())
                self.assertEqual(s.sock.version(), "TLSv1.3")
                self.assertEqual(s.noop()[0], 250)
            server.stop_checked(self)
        finally:
            server.cleanup()
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
