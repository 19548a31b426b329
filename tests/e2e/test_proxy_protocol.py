#!/usr/bin/env python3
"""The PROXY protocol (v1 and v2) in front of the gateway, with a client
that writes the header and its first SMTP bytes in one write: the header's
client address is what Received:, the message_accepted log line and the
per-client limits see; required listeners close untrusted peers and those
that send nothing in time, without a banner; optional listeners read a
header from trusted peers only (from others a PROXY line is a bad command);
a v2 LOCAL probe counts against no limit and logs nothing at info; a
malformed header is closed, counted and logged with its reason; on smtps the
TLS ClientHello sent behind the header reaches TLS.

The balancer is 127.0.0.1 (proxy_trusted); an untrusted peer binds
127.0.0.3. Every connection is on loopback and bounded in time.
"""

import os
import re
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import proxy_headers as ph  # noqa: E402

UNTRUSTED = "127.0.0.3"
REJECTED = 'ringmx_connections_rejected_total{reason="proxy"}'


def make_cert(d):
    cp = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "p.key", "-out", "p.crt",
         "-days", "30", "-subj", "/CN=" + h.HOSTNAME], cwd=d, stdin=subprocess.DEVNULL,
        capture_output=True, timeout=60)
    if cp.returncode != 0:
        raise h.StartError("openssl req failed: %s" % cp.stderr.decode("latin-1"))
    return os.path.join(d, "p.crt"), os.path.join(d, "p.key")


class ProxyProtocolTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.plain = h.free_port()
        cls.req = h.free_port()
        cls.opt = h.free_port()
        cls.tls = h.free_port()
        cls.mport = h.free_port()
        cls.certdir = __import__("tempfile").mkdtemp(prefix="ringmx-e2e-proxy-")
        crt, key = make_cert(cls.certdir)
        settings = [
            ("listen", "127.0.0.1:%d smtp proxy=required" % cls.req),
            ("listen", "127.0.0.1:%d proxy=optional" % cls.opt),
            ("listen", "127.0.0.1:%d smtps proxy=required" % cls.tls),
            ("tls_cert", crt), ("tls_key", key),
            ("proxy_trusted", "127.0.0.1 ::1"),
            ("proxy_timeout", "2s"),
            ("limits_exempt", "none"),
            ("max_connections_per_ip", "2"),
            ("metrics_listen", "127.0.0.1:%d" % cls.mport),
        ]
        cls.server = h.Server(settings=settings, listen=["127.0.0.1:%d" % cls.plain])
        try:
            cls.server.start()
        except BaseException:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        h.stop_and_check(cls.server)
        subprocess.run(["rm", "-rf", cls.certdir], check=False)

    def mark(self):
        return ph.log_mark(self.server)

    def wait_log(self, since, pattern, timeout=10.0):
        return ph.wait_log(self, self.server, since, pattern, timeout)

    def send_via(self, header, client_ip, port=None):
        """Header and EHLO in one write; then a message. Returns the queue id."""
        c = ph.connect(port or self.req, first=header + b"EHLO proxied.example\r\n")
        try:
            h.assert_reply(self, c.reply(), 220, sent=c.sent)
            h.assert_reply(self, c.reply(), 250, sent=c.sent)
            qid = h.send_message(self, c, b"Subject: via proxy\r\n\r\nbody\r\n")
            h.assert_reply(self, c.cmd("QUIT"), 221, sent=c.sent)
        finally:
            c.close()
        return qid

    def check_client(self, qid, ip, since):
        received, _ = h.split_received(self.server.show_body(qid))
        h.check_received(self, received, "proxied.example", ip, qid)
        line = self.wait_log(since, r"(?i)event=message_accepted\b.*%s" % qid)
        lines = [ln for ln in ph.log_lines(self.server, since, "message_accepted")
                 if qid.lower() in ln.lower()]
        self.assertEqual(len(lines), 1, "message_accepted for %s: %r" % (qid, line))
        self.assertRegex(lines[0], r"\bclient=\"?%s\"?(\s|$)" % re.escape(ip))

    def test_header_and_first_bytes_in_one_write(self):
        cases = [("v1 TCP4", ph.v1("192.0.2.10"), "192.0.2.10"),
                 ("v1 TCP6", ph.v1("2001:db8::7", "::1"), "2001:db8::7"),
                 ("v2 TCP4", ph.v2("192.0.2.11"), "192.0.2.11"),
                 ("v2 TCP6", ph.v2("2001:db8::8"), "2001:db8::8"),
                 ("v2 TCP4 with TLVs", ph.v2("192.0.2.12", tlvs=b"\x05\x00\x04abcd"),
                  "192.0.2.12")]
        for name, header, ip in cases:
            with self.subTest(name):
                since = self.mark()
                qid = self.send_via(header, ip)
                self.check_client(qid, ip, since)

    def test_optional_listener(self):
        # trusted, with a header
        since = self.mark()
        qid = self.send_via(ph.v2("192.0.2.20"), "192.0.2.20", port=self.opt)
        self.check_client(qid, "192.0.2.20", since)
        # trusted, no header: its first bytes are the session's
        c = ph.connect(self.opt, first=b"EHLO plain.example\r\n")
        try:
            h.assert_reply(self, c.reply(), 220, sent=c.sent)
            h.assert_reply(self, c.reply(), 250, sent=c.sent)
            h.assert_reply(self, c.cmd("QUIT"), 221, sent=c.sent)
        finally:
            c.close()
        # trusted and silent: after proxy_timeout, an ordinary client
        t0 = time.monotonic()
        c = ph.connect(self.opt)
        try:
            h.assert_reply(self, c.reply(), 220, sent=c.sent)
            self.assertGreater(time.monotonic() - t0, 1.5, "banner before proxy_timeout")
            h.assert_reply(self, c.cmd("EHLO silent.example"), 250, sent=c.sent)
        finally:
            c.close()
        # trusted, stopped inside a signature: closed as in required mode
        c = ph.connect(self.opt, first=b"PROX")
        try:
            self.assertTrue(c.is_closed(8.0), "a half signature was not closed")
            self.assertEqual(c.buf, b"")
        finally:
            c.close()
        # untrusted: nothing parsed; a PROXY line is an ordinary bad command
        since = self.mark()
        c = ph.connect(self.opt, source=UNTRUSTED)
        try:
            h.assert_reply(self, c.reply(), 220, sent=c.sent)
            r = c.cmd(ph.v1("192.0.2.21").decode().rstrip("\r\n"))
            self.assertEqual(r.code // 100, 5, "PROXY line from an untrusted peer: %r" % r)
            h.assert_reply(self, c.cmd("EHLO untrusted.example"), 250, sent=c.sent)
            qid = h.send_message(self, c, b"Subject: direct\r\n\r\nbody\r\n")
            h.assert_reply(self, c.cmd("QUIT"), 221, sent=c.sent)
        finally:
            c.close()
        received, _ = h.split_received(self.server.show_body(qid))
        h.check_received(self, received, "untrusted.example", UNTRUSTED, qid)

    def test_required_untrusted_closed_without_banner(self):
        before = ph.metric(self.mport, REJECTED)
        since = self.mark()
        c = ph.connect(self.req, source=UNTRUSTED, first=ph.v1("192.0.2.30"))
        try:
            self.assertTrue(c.is_closed(5.0), "an untrusted peer was not closed")
            self.assertEqual(c.buf, b"", "bytes sent to an untrusted peer: %r" % c.buf)
        finally:
            c.close()
        self.wait_log(since, r"level=info\b.*event=proxy_refused\b.*peer=%s\b.*reason=untrusted"
                      % re.escape(UNTRUSTED))
        self.assertEqual(ph.metric(self.mport, REJECTED), before + 1)

    def test_required_timeout(self):
        since = self.mark()
        t0 = time.monotonic()
        c = ph.connect(self.req)
        try:
            self.assertTrue(c.is_closed(8.0), "a silent peer was not closed")
            self.assertEqual(c.buf, b"", "bytes sent before a header: %r" % c.buf)
        finally:
            c.close()
        took = time.monotonic() - t0
        self.assertGreater(took, 1.5, "closed before proxy_timeout")
        self.wait_log(since, r"event=proxy_refused\b.*reason=timeout")
        # Part of a header, then nothing: the same
        c = ph.connect(self.req, first=ph.v2("192.0.2.31")[:20])
        try:
            self.assertTrue(c.is_closed(8.0), "a half header was not closed")
            self.assertEqual(c.buf, b"")
        finally:
            c.close()

    def test_malformed_headers(self):
        cases = [("v1_address", b"PROXY TCP4 192.0.2.300 127.0.0.1 1 25\r\n"),
                 ("v1_syntax", b"PROXY TCP4  192.0.2.1 127.0.0.1 1 25\r\n"),
                 ("v2_version", ph.V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\x00" * 12),
                 ("v2_tlv", ph.v2("192.0.2.32", tlvs=b"\x05\x00\x09ab")),
                 ("signature", b"EHLO no-header.example\r\n")]
        for reason, header in cases:
            with self.subTest(reason):
                before = ph.metric(self.mport, REJECTED)
                since = self.mark()
                c = ph.connect(self.req, first=header + b"EHLO x.example\r\n")
                try:
                    self.assertTrue(c.is_closed(5.0), "not closed")
                    self.assertEqual(c.buf, b"", "a reply to a bad header: %r" % c.buf)
                finally:
                    c.close()
                self.wait_log(since, r"level=info\b.*event=proxy_refused\b.*reason=%s\b"
                              % reason)
                self.assertEqual(ph.metric(self.mport, REJECTED), before + 1)

    def test_local_probe(self):
        since = self.mark()
        probes = []
        try:
            # More probes than max_connections_per_ip, all open at once:
            # none is counted, none refused.
            for _ in range(4):
                c = ph.connect(self.req, first=ph.v2(None, local=True) + b"NOOP\r\n")
                probes.append(c)
            for c in probes:
                h.assert_reply(self, c.reply(), 220, sent=c.sent)
                h.assert_reply(self, c.reply(), 250, sent=c.sent)
                h.assert_reply(self, c.cmd("QUIT"), 221, sent=c.sent)
        finally:
            for c in probes:
                c.close()
        # HAProxy's check: the header, then the connection closes at once.
        c = ph.connect(self.req, first=ph.v2(None, local=True))
        c.close()
        # A session after them: its lines appear, the probes' never did.
        since_session = self.mark()
        self.send_via(ph.v1("192.0.2.40"), "192.0.2.40")
        self.wait_log(since_session, r"event=connection_close\b.*client=192\.0\.2\.40")
        # Only this test's clients: another test's connection accepted late
        # (from the listen backlog) may log here too.
        opens = [ln for ln in ph.log_lines(self.server, since, "connection_open")
                 if re.search(r"client=(127\.0\.0\.1|192\.0\.2\.40)\b", ln)]
        self.assertEqual(len(opens), 1, "connection_open lines: %r" % opens)
        self.assertIn("client=192.0.2.40", opens[0])
        for ln in ph.log_lines(self.server, since, None):
            if "level=info" in ln:
                self.assertNotRegex(ln, r"=127\.0\.0\.1\b", "an info line for a probe")

    def test_limits_count_the_header_address(self):
        held = []
        try:
            for _ in range(2):
                c = ph.connect(self.req, first=ph.v1("192.0.2.50"))
                h.assert_reply(self, c.reply(), 220, sent=c.sent)
                held.append(c)
            # the third from the same client: 421 4.7.0 (through the balancer)
            c = ph.connect(self.req, first=ph.v1("192.0.2.50"))
            try:
                r = c.reply()
                h.assert_reply(self, r, 421, "4.7.0", sent=c.sent)
                self.assertTrue(c.is_closed(5.0))
            finally:
                c.close()
            # another client through the same balancer is served
            c = ph.connect(self.req, first=ph.v2("192.0.2.51") + b"EHLO other.example\r\n")
            try:
                h.assert_reply(self, c.reply(), 220, sent=c.sent)
                h.assert_reply(self, c.reply(), 250, sent=c.sent)
            finally:
                c.close()
        finally:
            for c in held:
                c.close()

    def test_smtps_client_hello_behind_the_header(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname=h.HOSTNAME)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outgoing.read()
        self.assertTrue(hello)
        since = self.mark()
        c = ph.connect(self.tls, first=ph.v2("2001:db8::60") + hello)
        sock = c.sock
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pass
                out = outgoing.read()
                if out:
                    sock.sendall(out)
                self.assertLess(time.monotonic(), deadline, "handshake did not finish")
                data = sock.recv(65536)
                self.assertTrue(data, "closed during the handshake")
                incoming.write(data)
            out = outgoing.read()
            if out:
                sock.sendall(out)

            def read_reply():
                buf = b""
                while not re.search(rb"(^|\r\n)\d{3} [^\r\n]*\r\n$", buf):
                    try:
                        buf += tls.read(65536)
                    except ssl.SSLWantReadError:
                        data = sock.recv(65536)
                        self.assertTrue(data, "closed")
                        incoming.write(data)
                return buf

            def cmd(line):
                tls.write(line)
                sock.sendall(outgoing.read())
                return read_reply()

            self.assertTrue(read_reply().startswith(b"220 "))
            self.assertTrue(cmd(b"EHLO tls.example\r\n").startswith(b"250"))
            # smtps is submission: mail needs AUTH; the session is what counts
            self.assertTrue(cmd(b"QUIT\r\n").startswith(b"221"))
        finally:
            sock.close()
        self.wait_log(since, r"event=connection_open\b.*client=2001:db8::60")
        self.wait_log(since, r"event=tls_established\b.*client=2001:db8::60")


if __name__ == "__main__":
    unittest.main()
