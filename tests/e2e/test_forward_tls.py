#!/usr/bin/env python3
"""Forwarding over STARTTLS (RFC 3207) to the upstream relay.

A private Postfix smtpd with smtpd_tls_security_level = may and a
certificate for relay.e2e.test, issued at test time by a CA made with
openssl, is the upstream:

- upstream_tls = opportunistic, no upstream_ca: the gateway starts TLS,
  Postfix logs the TLS connection and writes "using TLSv1.x with cipher"
  into its Received: header, the gateway logs event=upstream_tls with the
  version and cipher (verified=no) and names them on the delivery line.
- upstream_tls = required, upstream_ca = the test CA, the upstream named
  relay.e2e.test: the chain and the name verify (verified=yes), delivered.
- The same with the upstream named other.e2e.test: the certificate does
  not carry that name; the handshake fails with
  error=certificate_verify_failed, the mail is deferred with 451 4.7.5
  (ringmx-store ls --deferred) and nothing reaches the mailbox, in clear
  or otherwise.

And smtp-sink, which offers no STARTTLS, with upstream_tls = required: the
message stays deferred with 451 4.7.4 and smtp-sink receives no
transaction.

A scripted relay that offers STARTTLS and then answers the ClientHello with
text: with upstream_tls = opportunistic (no upstream_ca) the gateway logs
the failed handshake (next=retry_in_clear), connects again at once and
sends the message in clear, without STARTTLS, though the relay still
offers it.
"""

import os
import re
import subprocess
import sys
import shutil
import smtplib
import socket
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

RELAY_NAME = "relay.e2e.test"
WRONG_NAME = "other.e2e.test"
SENDER = "sender@client.example"
RCPT = "tls-rcpt@" + h.DOMAIN
WAIT_S = 60.0
BIG_LINES = 4000  # about 330 KB: twenty TLS records and more
OPENSSL_TIMEOUT_S = 60
DEFERRED_RE = re.compile(r"^(?P<id>[0-9A-F]{16}) \S+ (?:now|in \S+) (?P<attempts>\d+) "
                         r"(?P<reply>-|\d{3}(?: \d\.\d+\.\d+)?) (?P<pending>\d+)/(?P<total>\d+)$")


def openssl(*args, cwd):
    cp = subprocess.run(["openssl"] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                        capture_output=True, timeout=OPENSSL_TIMEOUT_S)
    if cp.returncode != 0:
        raise h.StartError("openssl %s exited %d: %s"
                           % (" ".join(args), cp.returncode, cp.stderr.decode("latin-1")))


def make_pki(d):
    """A CA and a server certificate for RELAY_NAME it signed, in d.
    Returns (ca.pem, relay.pem, relay.key)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=ringmx e2e test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", *ec, "-keyout", "relay.key", "-out", "relay.csr",
            "-subj", "/CN=" + RELAY_NAME, cwd=d)
    with open(os.path.join(d, "relay.ext"), "w") as f:
        f.write("subjectAltName = DNS:%s\nbasicConstraints = CA:FALSE\n"
                "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
                % RELAY_NAME)
    openssl("x509", "-req", "-in", "relay.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "relay.pem", "-days", "2", "-extfile", "relay.ext",
            cwd=d)
    os.chmod(os.path.join(d, "ca.pem"), 0o644)
    return tuple(os.path.join(d, n) for n in ("ca.pem", "relay.pem", "relay.key"))


def send(srv, token, body="over TLS\r\n"):
    """One message through the gateway; returns its queue id."""
    with smtplib.SMTP(h.LOOPBACK4, srv.port, timeout=h.SOCKET_TIMEOUT_S) as s:
        s.ehlo("tls.client.example")
        code, resp = s.mail(SENDER)
        assert code == 250, resp
        code, resp = s.rcpt(RCPT)
        assert code == 250, resp
        code, resp = s.data("Subject: %s\r\nMessage-ID: <%s@client.example>\r\n\r\n%s"
                            % (token, token, body))
        assert code == 250, resp
        m = re.search(rb"queued as ([0-9A-Fa-f]{16})", resp)
        assert m, resp
        return m.group(1).decode().upper()


def deliveries(srv, qid):
    return [e for e in up.log_events(srv, "delivery") if e.get("id", "").upper() == qid]


def deferred_line(srv, qid):
    cp = srv.store("ls", "--deferred", check=True)
    for line in cp.stdout.decode("utf-8", "replace").splitlines()[1:]:
        m = DEFERRED_RE.match(line)
        if m and m.group("id") == qid:
            return m
    return None


class ForwardOverTls(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        up.require_root()
        h.require_program("openssl")
        cls.pki_dir = tempfile.mkdtemp(prefix="ringmx-tls-pki-")
        os.chmod(cls.pki_dir, 0o755)
        cls.relay = None
        try:
            cls.ca, cert, key = make_pki(cls.pki_dir)
            cls.relay = up.PostfixRelay(
                domains=[h.DOMAIN, "client.example"], mailboxes=[RCPT], hostname=RELAY_NAME,
                main_extra=["smtpd_tls_security_level = may",
                            "smtpd_tls_cert_file = %s" % cert,
                            "smtpd_tls_key_file = %s" % key,
                            "smtpd_tls_loglevel = 1",
                            "smtpd_tls_received_header = yes"])
            # tlsmgr seeds smtpd's TLS; the shared master.cf has no use for it
            with open(os.path.join(cls.relay.conf_dir, "master.cf"), "a") as f:
                f.write("tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n")
            cls.relay.start()
        except BaseException:
            if cls.relay is not None:
                cls.relay.cleanup()
            shutil.rmtree(cls.pki_dir, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.relay.cleanup()
        finally:
            shutil.rmtree(cls.pki_dir, ignore_errors=True)

    def gateway(self, upstream, extra):
        settings = up.forward_settings([self.relay.port], extra=extra)
        settings[0] = ("upstream", upstream)
        srv = h.Server(settings=settings)
        self.addCleanup(srv.cleanup)
        srv.start()
        return srv

    def delivered(self, srv, token):
        def find():
            return [m for _, m in self.relay.messages(RCPT) if token.encode() in m] or None

        got = up.wait_for(find, WAIT_S, 0.2)
        if not got:
            self.fail("no message with %s within %.0fs;\ngateway log tail:\n%s\nPostfix log "
                      "tail:\n%s" % (token, WAIT_S, srv.stderr_text()[-3000:],
                                     self.relay.log_text()[-3000:]))
        self.assertEqual(len(got), 1, "%d copies of %s" % (len(got), token))
        return got[0]

    def check_tls_delivery(self, srv, qid, data, verified):
        # Postfix took the message over TLS: its Received: says so
        m = re.search(rb"Received: from \S+ \([^)]*\)\s+\(using (TLSv1\.[23]) with cipher "
                      rb"(\S+)", data)
        self.assertIsNotNone(m, "Postfix's Received: header names no TLS: %r" % data[:800])
        self.assertRegex(self.relay.log_text(),
                         r"(Anonymous|Untrusted|Trusted|Verified) TLS connection established "
                         r"from localhost\[127\.0\.0\.1\]")
        tls = up.log_events(srv, "upstream_tls")
        self.assertTrue(tls, "no event=upstream_tls;\n%s" % srv.stderr_text()[-3000:])
        self.assertEqual(tls[0].get("version"), m.group(1).decode(), tls[0])
        self.assertEqual(tls[0].get("verified"), "yes" if verified else "no", tls[0])
        self.assertTrue(tls[0].get("cipher"), tls[0])
        ev = up.wait_for(lambda: deliveries(srv, qid), WAIT_S, 0.1)
        self.assertTrue(ev, srv.stderr_text()[-3000:])
        self.assertEqual(ev[0].get("result"), "delivered", ev[0])
        self.assertEqual(ev[0].get("tls_version"), tls[0].get("version"), ev[0])
        self.assertEqual(ev[0].get("tls_cipher"), tls[0].get("cipher"), ev[0])
        self.assertEqual(up.log_events(srv, "upstream_tls_failed"), [])

    def test_opportunistic_unverified(self):
        srv = self.gateway("%s:%d" % (h.LOOPBACK4, self.relay.port),
                           [("upstream_tls", "opportunistic")])
        token = h.unique_token("tlsopp")
        qid = send(srv, token)
        data = self.delivered(srv, token)
        self.check_tls_delivery(srv, qid, data, verified=False)
        # a large message: its body goes in many TLS records
        line = "%s %s\r\n" % (token, "x" * 60)
        big = h.unique_token("tlsbig")
        qid = send(srv, big, line * BIG_LINES)
        data = self.delivered(srv, big)
        self.assertEqual(data.count(line.rstrip("\r\n").encode() + b"\n"), BIG_LINES)
        ev = up.wait_for(lambda: deliveries(srv, qid), WAIT_S, 0.1)
        self.assertEqual(ev[0].get("result"), "delivered", ev[0])
        self.assertTrue(ev[0].get("tls_version"), ev[0])
        h.stop_and_check(srv)

    def test_required_verified(self):
        srv = self.gateway("%s=%s:%d" % (RELAY_NAME, h.LOOPBACK4, self.relay.port),
                           [("upstream_tls", "required"), ("upstream_ca", self.ca)])
        token = h.unique_token("tlsver")
        qid = send(srv, token)
        data = self.delivered(srv, token)
        self.check_tls_delivery(srv, qid, data, verified=True)
        h.stop_and_check(srv)

    def test_wrong_name_deferred(self):
        srv = self.gateway("%s=%s:%d" % (WRONG_NAME, h.LOOPBACK4, self.relay.port),
                           [("upstream_tls", "opportunistic"), ("upstream_ca", self.ca)])
        token = h.unique_token("tlsname")
        qid = send(srv, token)

        def failed_twice():
            ev = up.log_events(srv, "upstream_tls_failed")
            return len(ev) >= 2 and ev
        ev = up.wait_for(failed_twice, WAIT_S, 0.1)
        self.assertTrue(ev, "no two event=upstream_tls_failed;\n%s" % srv.stderr_text()[-3000:])
        self.assertEqual(ev[0].get("error"), "certificate_verify_failed", ev[0])
        self.assertEqual(ev[0].get("name"), WRONG_NAME, ev[0])
        self.assertEqual(ev[0].get("next"), "defer", ev[0])
        m = up.wait_for(lambda: deferred_line(srv, qid), WAIT_S, 0.2)
        self.assertIsNotNone(m, "%s not in ringmx-store ls --deferred;\n%s"
                             % (qid, srv.stderr_text()[-3000:]))
        self.assertEqual(m.group("reply"), "451 4.7.5", m.group(0))
        for e in deliveries(srv, qid):
            self.assertEqual((e.get("result"), e.get("reply")), ("deferred", "451 4.7.5"), e)
        self.assertEqual(up.log_events(srv, "upstream_tls"), [])
        # never sent in clear after the failed handshake
        self.assertEqual([m for _, m in self.relay.messages(RCPT) if token.encode() in m], [])
        h.stop_and_check(srv)


class BrokenTlsRelay(up.ScriptedRelay):
    """Offers STARTTLS; to a ClientHello it answers text and closes. Records
    each connection's commands and the message data it took in clear."""

    IDLE_S = 10.0
    JOIN_TIMEOUT_S = IDLE_S + 5

    def __init__(self):
        super().__init__()
        self.sessions = []  # one list of command lines per connection
        self.data = []

    def snapshot(self):
        with self.lock:
            return [list(x) for x in self.sessions], list(self.data)

    def _lines(self, conn, buf):
        idle_since = time.monotonic()
        while not self.stopping.is_set() and time.monotonic() - idle_since < self.IDLE_S:
            while b"\r\n" in buf[0]:
                line, buf[0] = buf[0].split(b"\r\n", 1)
                yield line
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            idle_since = time.monotonic()
            buf[0] += chunk

    def session(self, conn):
        cmds = []
        with self.lock:
            self.sessions.append(cmds)
        buf = [b""]
        try:
            conn.sendall(b"220 broken-tls.e2e.test ESMTP\r\n")
            lines = self._lines(conn, buf)
            for line in lines:
                with self.lock:
                    cmds.append(line.decode("latin-1"))
                verb = line[:8].upper()
                if verb.startswith(b"EHLO"):
                    conn.sendall(b"250-broken-tls.e2e.test\r\n250-PIPELINING\r\n"
                                 b"250 STARTTLS\r\n")
                elif verb == b"STARTTLS":
                    conn.sendall(b"220 2.0.0 go ahead\r\n")
                    time.sleep(0.2)  # the ClientHello
                    conn.sendall(b"this is not TLS\r\n")
                    return
                elif verb.startswith(b"DATA"):
                    conn.sendall(b"354 go\r\n")
                    body = b""
                    for dl in lines:
                        if dl == b".":
                            break
                        body += dl + b"\r\n"
                    with self.lock:
                        self.data.append(body)
                    conn.sendall(b"250 2.0.0 taken in clear\r\n")
                elif verb.startswith(b"QUIT"):
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            pass
        finally:
            conn.close()


class OpportunisticFallback(unittest.TestCase):

    def test_failed_handshake_retries_in_clear(self):
        relay = BrokenTlsRelay().start()
        self.addCleanup(relay.stop)
        srv = h.Server(settings=up.forward_settings([relay.port],
                                                    extra=[("upstream_tls", "opportunistic")]))
        self.addCleanup(srv.cleanup)
        srv.start()
        token = h.unique_token("tlsfallback")
        qid = send(srv, token)

        def delivered():
            ev = [e for e in deliveries(srv, qid) if e.get("result") == "delivered"]
            return ev or None
        ev = up.wait_for(delivered, WAIT_S, 0.1)
        self.assertTrue(ev, "not delivered in clear after the failed handshake;\n%s"
                        % srv.stderr_text()[-3000:])
        self.assertNotIn("tls_version", ev[0])
        failed = up.log_events(srv, "upstream_tls_failed")
        self.assertEqual(len(failed), 1, failed)
        self.assertEqual(failed[0].get("next"), "retry_in_clear", failed[0])
        sessions, data = relay.snapshot()
        self.assertEqual(sum(1 for s in sessions if "STARTTLS" in s), 1,
                         "STARTTLS tried again after the failed handshake: %r" % sessions)
        clear = [s for s in sessions if any(c.startswith("MAIL FROM:") for c in s)]
        self.assertEqual(len(clear), 1, sessions)
        self.assertNotIn("STARTTLS", clear[0], clear[0])
        self.assertEqual(len([d for d in data if token.encode() in d]), 1, data)
        # one attempt: the clear retry is part of it, not a deferral
        self.assertEqual([e.get("attempt") for e in deliveries(srv, qid)], ["1"])
        h.stop_and_check(srv)


class RequiredWithoutStarttls(unittest.TestCase):

    def test_required_defers_and_sends_nothing(self):
        up.require_root()  # smtp-sink runs as nobody
        sink = up.Sink().start()
        self.addCleanup(sink.cleanup)
        srv = h.Server(settings=up.forward_settings([sink.port],
                                                    extra=[("upstream_tls", "required")]))
        self.addCleanup(srv.cleanup)
        srv.start()
        token = h.unique_token("tlsreq")
        qid = send(srv, token)

        def two_refusals():
            ev = up.log_events(srv, "upstream_failed")
            return len(ev) >= 2 and ev
        ev = up.wait_for(two_refusals, WAIT_S, 0.1)
        self.assertTrue(ev, "no two event=upstream_failed;\n%s" % srv.stderr_text()[-3000:])
        for e in ev:
            self.assertEqual(e.get("reply"), "451 4.7.4 TLS is required, but upstream did not "
                             "offer STARTTLS", e)
        self.assertEqual(deliveries(srv, qid), [])
        m = deferred_line(srv, qid)
        self.assertIsNotNone(m, "%s not in ringmx-store ls --deferred" % qid)
        self.assertEqual(m.group("reply"), "451 4.7.4", m.group(0))
        self.assertEqual((m.group("pending"), m.group("total")), ("1", "1"), m.group(0))
        self.assertEqual(sink.dump_files(), [], "smtp-sink received a transaction in clear")
        h.stop_and_check(srv)
        self.assertEqual(sink.dump_files(), [])


if __name__ == "__main__":
    unittest.main()
