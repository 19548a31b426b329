#!/usr/bin/env python3
"""ringmx-bench against a real ringmx: a 2-second run with --json - must exit
0, print JSON that parses, report messages > 0 and errors == 0, and the
store (read by ringmx-store stats) must have gained at least as many
messages as the bench says were acknowledged. Also: bad options exit 2 (an
unknown --tls mode, --tls-resume without TLS); lock-step sessions, one per message, at a fixed rate; refused
recipients counted by reply code; idle sessions kept past the server's idle
timeout by NOOPs (and ended by it without them). Against a scripted peer:
replies dribbled a byte at a time, a refused recipient, no PIPELINING offered,
421 and a close in the middle of a transaction.

TLS against ringmx itself (a certificate made at test time, an smtp
listener offering STARTTLS and an smtps one): --tls over persistent
sessions and with a full handshake per message (the store gains what the
bench counted), --smtps (every MAIL gets 530 5.7.0 through TLS: smtps wants
AUTH, which the bench does not speak); ringmx logs each handshake the bench
counts (tls_established).

TLS, against a private Postfix smtpd with a certificate made at test time
(smtpd_tls_security_level = may on one port, smtpd_tls_wrappermode on
another): --tls over persistent sessions (one handshake per connection,
each one logged by Postfix), --tls with a new connection per message (a
full handshake each), --tls-resume (resumed handshakes), --smtps, and
--smtps against the STARTTLS port (handshakes fail, counted). Against the
scripted peer speaking TLS through Python's ssl module: cleartext the peer
pushes behind its 220 to STARTTLS is dropped, never read as a reply; an
EHLO without STARTTLS ends the session, counted.

The bench binary is <build dir>/bench/ringmx-bench, the build dir being the
parent of RINGMX_BIN.
"""

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

RUN_S = 2
BENCH_TIMEOUT_S = 30


def run_bench(testcase, port, args, want_rc=0):
    """Runs the bench with --json - against port; asserts its exit status and
    returns (parsed JSON, stderr text)."""
    cmd = [h.bench_bin(), "--server", "%s:%d" % (h.LOOPBACK4, port), "--json", "-"] + args
    cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                        timeout=BENCH_TIMEOUT_S)
    err = cp.stderr.decode("utf-8", "replace")
    testcase.assertEqual(cp.returncode, want_rc, "ringmx-bench %r exited %d; stderr:\n%s"
                         % (args, cp.returncode, err))
    try:
        res = json.loads(cp.stdout.decode("utf-8"))
    except ValueError as e:
        testcase.fail("--json - printed no JSON (%s): %r" % (e, cp.stdout[:500]))
    return res, err


class BenchSmokeTest(h.ServerTestCase, unittest.TestCase):
    """One ringmx for these tests (they run one after another)."""

    def stored(self):
        return int(self.server.stats().get("messages", "0"))

    def test_two_second_run_is_counted_in_the_store(self):
        before = self.stored()
        res, err = run_bench(self, self.server.port, [
            "--conns", "8", "--duration", str(RUN_S), "--size", "1k:70,10k:30",
            "--rcpts", "2", "--to", "user@" + h.DOMAIN, "--idle-conns", "4",
            "--pid", str(self.server.proc.pid)])
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
        stored = self.stored() - before
        self.assertGreaterEqual(stored, res["messages"],
                                "the store gained %d messages, the bench reported %d "
                                "acknowledged" % (stored, res["messages"]))

    def test_lock_step_new_connections_at_a_fixed_rate(self):
        before = self.stored()
        res, _ = run_bench(self, self.server.port, [
            "--conns", "4", "--messages", "60", "--rate", "100", "--pipelining", "off",
            "--new-conn-per-message", "--rcpts", "3"])
        self.assertEqual(res["messages"], 60, res)
        self.assertEqual(res["errors"], 0, res)
        self.assertGreaterEqual(res["connects"], 60, res)
        self.assertGreater(res["conns_per_s"], 0, res)
        self.assertEqual(res["schedule_lag_us"]["count"], 60, res)
        # 60 messages at 100/s cannot take much less than 0.59 s
        self.assertGreater(res["elapsed_s"], 0.55, res)
        self.assertGreaterEqual(self.stored() - before, 60)

    def test_refused_recipients_are_counted_by_code(self):
        res, _ = run_bench(self, self.server.port, [
            "--conns", "2", "--messages", "20", "--to", "user@not-served.example"],
            want_rc=1)
        self.assertEqual(res["messages"], 0, res)
        self.assertEqual(res["errors"], 20, res)
        codes = res["errors_by_code"]
        self.assertEqual(sum(codes.values()), 20, res)
        self.assertTrue(all(k.startswith("5") for k in codes), res)


class BenchIdleSessionsTest(h.ServerTestCase, unittest.TestCase):
    settings = [("idle_timeout", "1s"), ("command_timeout", "1s")]

    def test_idle_sessions_outlive_the_idle_timeout_only_with_noop(self):
        load = ["--conns", "2", "--duration", "2", "--idle-conns", "6"]
        res, _ = run_bench(self, self.server.port, load + ["--idle-noop", "0.25"])
        self.assertEqual(res["connection_failures"], 0, res)
        self.assertEqual(res["connects"], 8, res)
        # the control: without NOOPs the server ends the idle sessions
        res, _ = run_bench(self, self.server.port, load, want_rc=1)
        self.assertGreaterEqual(res["connection_failures"], 6, res)
        self.assertEqual(res["errors"], 0, res)


class BenchOptionsTest(unittest.TestCase):

    def test_bad_options_exit_2(self):
        for args in (["--conns", "5"],                          # no --server
                     ["--server", "127.0.0.1:1", "--size", "1k:50,2k:40"],
                     ["--server", "127.0.0.1:1", "--pipelining", "maybe"],
                     ["--server", "127.0.0.1:1", "--messages", "5", "--duration", "1"],
                     ["--server", "127.0.0.1:1", "--tls=ssl"],
                     ["--server", "127.0.0.1:1", "--tls-resume"]):
            cp = subprocess.run([h.bench_bin()] + args, stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=BENCH_TIMEOUT_S)
            self.assertEqual(cp.returncode, 2, "%r exited %d: %s"
                             % (args, cp.returncode, cp.stderr))
            self.assertTrue(cp.stderr.strip(), "%r said nothing on stderr" % args)


class ScriptedPeer:
    """A small SMTP server written for these tests, so the bench meets what
    ringmx never sends: replies dribbled one byte per write, no PIPELINING,
    refusals, 421 and a close in the middle of a transaction.

    behaviour(conn_index, msg_index, command) returns the reply line(s) for a
    command (bytes), or None to close the connection without a reply.
    """

    def __init__(self, behaviour, pipelining=True, dribble=False, tls=None, inject=b""):
        self.behaviour = behaviour
        self.pipelining = pipelining
        self.dribble = dribble
        self.tls = tls            # an ssl.SSLContext: STARTTLS offered and served
        self.inject = inject      # cleartext pushed right behind the 220 to STARTTLS
        self.handshakes = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((h.LOOPBACK4, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.subjects = []
        self.lines_per_read = []  # command lines found in each read
        self.lock = threading.Lock()
        self.stopping = False
        self.conns = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def close(self):
        self.stopping = True
        self.thread.join(timeout=10)
        self.sock.close()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            with self.lock:
                index = self.conns
                self.conns += 1
            threading.Thread(target=self._serve, args=(c, index), daemon=True).start()

    def _send(self, c, data):
        if self.dribble:
            for i in range(len(data)):
                c.sendall(data[i:i + 1])
        else:
            c.sendall(data)

    def _serve(self, c, index):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.settimeout(15)
        buf = b""
        msg = 0
        try:
            self._send(c, b"220 peer.test ESMTP scripted\r\n")
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
                with self.lock:
                    self.lines_per_read.append(chunk.count(b"\n"))
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        ext = b"250-PIPELINING\r\n" if self.pipelining else b""
                        if self.tls is not None and not isinstance(c, ssl.SSLSocket):
                            ext += b"250-STARTTLS\r\n"
                        self._send(c, b"250-peer.test\r\n" + ext + b"250 8BITMIME\r\n")
                        continue
                    if line.upper() == b"STARTTLS" and self.tls is not None \
                            and not isinstance(c, ssl.SSLSocket):
                        c.sendall(b"220 2.0.0 go ahead\r\n" + self.inject)
                        c = self.tls.wrap_socket(c, server_side=True)
                        with self.lock:
                            self.handshakes += 1
                        buf = b""
                        continue
                    if verb == b"QUIT":
                        self._send(c, b"221 bye\r\n")
                        return
                    reply = self.behaviour(index, msg, line)
                    if reply is None:
                        return
                    self._send(c, reply)
                    if verb == b"DATA" and reply.startswith(b"354"):
                        while b"\r\n.\r\n" not in buf:
                            more = c.recv(65536)
                            if not more:
                                return
                            buf += more
                        body, buf = buf.split(b"\r\n.\r\n", 1)
                        subject = [l for l in body.split(b"\r\n") if l.startswith(b"Subject:")]
                        with self.lock:
                            self.subjects.extend(subject)
                        final = self.behaviour(index, msg, b".")
                        msg += 1
                        if final is None:
                            return
                        self._send(c, final)
        except OSError:
            return
        finally:
            c.close()


def accept_all(conn_index, msg_index, line):
    verb = line[:4].upper()
    if verb == b"DATA":
        return b"354 go ahead\r\n"
    if line == b".":
        return b"250 2.0.0 queued\r\n"
    return b"250 2.1.0 ok\r\n"


class BenchAgainstScriptedPeerTest(unittest.TestCase):

    def bench(self, peer, args):
        cmd = [h.bench_bin(), "--server", "%s:%d" % (h.LOOPBACK4, peer.port), "--json", "-",
               "--timeout", "10"] + args
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=BENCH_TIMEOUT_S)
        try:
            res = json.loads(cp.stdout.decode("utf-8"))
        except ValueError:
            self.fail("no JSON from %r (exit %d): %s" % (args, cp.returncode, cp.stderr))
        return cp.returncode, res, cp.stderr.decode("utf-8", "replace")

    def test_dribbled_replies_and_a_refused_recipient(self):
        def behaviour(ci, mi, line):
            if line.upper().startswith(b"RCPT TO:<USER2@"):
                return b"550 5.1.1 no such user\r\n"
            return accept_all(ci, mi, line)
        peer = ScriptedPeer(behaviour, dribble=True)
        self.addCleanup(peer.close)
        rc, res, err = self.bench(peer, ["--conns", "1", "--messages", "6", "--rcpts", "3"])
        self.assertEqual(rc, 1, err)
        self.assertEqual(res["messages"], 0, res)
        self.assertEqual(res["errors"], 6, res)
        self.assertEqual(res["errors_by_code"], {"550": 6}, res)
        # the body still went out after 354 (two recipients took it), each
        # message with its own Subject
        self.assertEqual(len(peer.subjects), 6, peer.subjects)
        self.assertEqual(len(set(peer.subjects)), 6, peer.subjects)

    def test_no_pipelining_offered_means_one_command_per_round_trip(self):
        peer = ScriptedPeer(accept_all, pipelining=False)
        self.addCleanup(peer.close)
        rc, res, err = self.bench(peer, ["--conns", "2", "--messages", "20", "--rcpts", "2"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["messages"], 20, res)
        self.assertEqual(res["no_pipelining_sessions"], 2, res)
        self.assertIn("PIPELINING", err)
        # body reads aside, no read ever held two command lines
        commands = [n for n in peer.lines_per_read if n <= 3]
        self.assertTrue(commands and max(commands) == 1, peer.lines_per_read)

    def test_more_threads_than_messages(self):
        # a loop whose share of --messages is 0 ends at once, with or
        # without a schedule
        peer = ScriptedPeer(accept_all)
        self.addCleanup(peer.close)
        for extra in ([], ["--rate", "20"]):
            rc, res, err = self.bench(peer, ["--threads", "3", "--conns", "3",
                                             "--messages", "2"] + extra)
            self.assertEqual(rc, 0, err)
            self.assertEqual(res["messages"], 2, res)

    def test_421_in_a_transaction_fails_it_and_the_slot_reconnects(self):
        def behaviour(ci, mi, line):
            if ci == 0 and mi == 1 and line.upper().startswith(b"MAIL"):
                return b"421 4.3.2 going away\r\n"
            if ci == 1 and mi == 0 and line == b".":
                return None  # close with the final reply owed
            return accept_all(ci, mi, line)
        peer = ScriptedPeer(behaviour)
        self.addCleanup(peer.close)
        rc, res, err = self.bench(peer, ["--conns", "1", "--messages", "10"])
        self.assertEqual(rc, 1, err)
        self.assertEqual(res["messages"], 8, res)
        self.assertEqual(res["errors_by_code"], {"421": 1, "conn": 1}, res)
        self.assertEqual(res["connection_failures"], 2, res)
        # the same failures with --allow-errors: exit 0, same counts
        again = ScriptedPeer(behaviour)
        self.addCleanup(again.close)
        rc, res, err = self.bench(again, ["--conns", "1", "--messages", "10", "--allow-errors"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["errors_by_code"], {"421": 1, "conn": 1}, res)


def make_certificate(directory):
    """A self-signed ECDSA P-256 certificate and key made with openssl."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-subj", "/CN=mx.e2e.test",
                    "-keyout", key, "-out", cert], stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=60, check=True)
    os.chmod(key, 0o644)
    return cert, key


class BenchTlsAgainstRingmxTest(unittest.TestCase):
    """ringmx with STARTTLS on its smtp listener and an smtps listener."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("openssl is not installed")
        cls.dir = tempfile.mkdtemp(prefix="ringmx-bench-tls-")
        cert, key = make_certificate(cls.dir)
        port = h.free_port()
        cls.smtps_port = h.free_port()
        cls.server = h.Server(settings=[
            ("tls_cert", cert), ("tls_key", key),
            ("listen", "%s:%d smtps" % (h.LOOPBACK4, cls.smtps_port))],
            listen=["%s:%d" % (h.LOOPBACK4, port)])
        try:
            cls.server.start()
        except BaseException:
            cls.server.cleanup()
            shutil.rmtree(cls.dir, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            h.stop_and_check(cls.server)
        finally:
            shutil.rmtree(cls.dir, ignore_errors=True)

    def stored(self):
        return int(self.server.stats().get("messages", "0"))

    def established(self):
        return len(up.log_events(self.server, "tls_established"))

    def run_tls(self, port, args):
        stored, logged = self.stored(), self.established()
        res, err = run_bench(self, port, ["--to", "user@" + h.DOMAIN, "--timeout", "20"] + args)
        self.assertEqual(res["errors"], 0, res)
        self.assertEqual(res["tls_failures"], 0, res)
        self.assertEqual(res["tls_resumed"], 0, res)
        self.assertTrue(res["tls_version"].startswith("TLSv1."), res)
        self.assertEqual(res["latency_handshake_us"]["count"], res["tls_handshakes"], res)
        self.assertGreaterEqual(self.stored() - stored, res["messages"])
        up.wait_for(lambda: self.established() - logged >= res["tls_handshakes"], 10)
        self.assertEqual(self.established() - logged, res["tls_handshakes"],
                         "ringmx logged another number of handshakes than the bench made")
        return res, err

    def test_starttls_once_per_persistent_session(self):
        res, err = self.run_tls(self.server.port, ["--tls", "--conns", "4",
                                                   "--messages", "200"])
        self.assertEqual(res["messages"], 200, res)
        self.assertEqual(res["tls_handshakes"], 4, res)
        self.assertIn("tls handshakes", err)

    def test_full_handshake_per_message(self):
        res, _ = self.run_tls(self.server.port, ["--tls", "--conns", "4", "--messages", "100",
                                                 "--new-conn-per-message"])
        self.assertEqual(res["messages"], 100, res)
        self.assertGreaterEqual(res["tls_handshakes"], 100, res)
        self.assertEqual(res["tls_handshakes"], res["connects"], res)

    def test_implicit_tls_reaches_the_session(self):
        # smtps wants AUTH before MAIL (530 5.7.0), which the bench does not
        # speak: every handshake completes and every MAIL is answered 530
        # through TLS
        logged = self.established()
        res, _ = run_bench(self, self.smtps_port, [
            "--smtps", "--conns", "2", "--messages", "6", "--pipelining", "off",
            "--to", "user@" + h.DOMAIN, "--timeout", "20"], want_rc=1)
        self.assertEqual(res["tls"], "implicit", res)
        self.assertEqual(res["messages"], 0, res)
        self.assertEqual(res["tls_failures"], 0, res)
        self.assertGreaterEqual(res["tls_handshakes"], 2, res)
        self.assertEqual(res["errors_by_code"].get("530"), res["errors"], res)
        self.assertGreater(res["errors"], 0, res)
        up.wait_for(lambda: self.established() - logged >= res["tls_handshakes"], 10)
        self.assertEqual(self.established() - logged, res["tls_handshakes"])


class BenchTlsAgainstScriptedPeerTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("openssl is not installed")
        cls.dir = tempfile.mkdtemp(prefix="ringmx-bench-tls-")
        cert, key = make_certificate(cls.dir)
        cls.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cls.ctx.load_cert_chain(cert, key)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    bench = BenchAgainstScriptedPeerTest.bench

    def test_cleartext_behind_the_starttls_reply_is_dropped(self):
        # Read as a reply, the injected line would answer the first command
        # sent under TLS (the injection of CVE-2011-0411's class, client side)
        # or, as a reply nobody asked for, fail the session.
        peer = ScriptedPeer(accept_all, tls=self.ctx,
                            inject=b"250 2.0.0 injected\r\n250 2.0.0 injected too\r\n")
        self.addCleanup(peer.close)
        rc, res, err = self.bench(peer, ["--tls", "--conns", "2", "--messages", "20"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["messages"], 20, res)
        self.assertEqual(res["tls_handshakes"], 2, res)
        self.assertEqual(res["tls_failures"], 0, res)
        self.assertEqual(peer.handshakes, 2)
        self.assertEqual(len(peer.subjects), 20, peer.subjects)

    def test_ehlo_without_starttls_ends_the_session(self):
        peer = ScriptedPeer(accept_all)
        self.addCleanup(peer.close)
        rc, res, err = self.bench(peer, ["--tls", "--conns", "1", "--messages", "3"])
        self.assertEqual(rc, 1, err)
        self.assertEqual(res["messages"], 0, res)
        self.assertEqual(res["tls_handshakes"], 0, res)
        self.assertGreaterEqual(res["no_starttls_sessions"], 1, res)
        self.assertEqual(peer.subjects, [])


POSTFIX_TLS_WRAPPER = ("{addr}:{port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes "
                       "-o smtpd_tls_security_level=encrypt\n"
                       "tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n")
TLS_LOGGED_RE = re.compile(r"smtpd\[\d+\]: Anonymous TLS connection established from")


def tls_greets(port):
    """True once a 220 comes through TLS from the first byte on port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((h.LOOPBACK4, port), timeout=2.0) as raw:
            with ctx.wrap_socket(raw) as s:
                return s.recv(512).startswith(b"220")
    except OSError:
        return False


class BenchTlsAgainstPostfixTest(unittest.TestCase):
    """Postfix smtpd with STARTTLS (may) and, on a second port, implicit TLS."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("Postfix is started as root")
        for name in ("postfix", "postconf", "openssl"):
            if shutil.which(name) is None:
                raise unittest.SkipTest("%s is not installed" % name)
        cls.dir = tempfile.mkdtemp(prefix="ringmx-bench-tls-")
        os.chmod(cls.dir, 0o755)
        cls.relay = None
        try:
            cert, key = make_certificate(cls.dir)
            cls.relay = up.PostfixRelay(
                domains=[h.DOMAIN], main_extra=[
                    "smtpd_tls_security_level = may",
                    "smtpd_tls_cert_file = %s" % cert,
                    "smtpd_tls_key_file = %s" % key,
                    "smtpd_tls_loglevel = 1"])
            cls.smtps_port = h.free_port()
            with open(os.path.join(cls.relay.conf_dir, "master.cf"), "a") as f:
                f.write(POSTFIX_TLS_WRAPPER.format(addr=h.LOOPBACK4, port=cls.smtps_port))
            cls.relay.start()
            if not up.wait_for(lambda: tls_greets(cls.smtps_port), 30, 0.2):
                raise h.StartError("no smtpd on the smtps port")
        except BaseException:
            if cls.relay is not None:
                cls.relay.cleanup()
            shutil.rmtree(cls.dir, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.relay.cleanup()
        finally:
            shutil.rmtree(cls.dir, ignore_errors=True)

    def tls_logged(self):
        return len(TLS_LOGGED_RE.findall(self.relay.log_text()))

    def run_tls(self, port, args, want_rc=0):
        before = self.tls_logged()
        res, err = run_bench(self, port, ["--to", "user@" + h.DOMAIN, "--timeout", "20"] + args,
                             want_rc)
        # Postfix logs each handshake once the session ends: wait for the last
        up.wait_for(lambda: self.tls_logged() - before >= res.get("tls_handshakes", 0), 10)
        return res, err, self.tls_logged() - before

    def check_handshakes(self, res):
        hs = res["tls_handshakes"]
        self.assertTrue(res["tls_version"].startswith("TLSv1."), res)
        self.assertTrue(res["tls_cipher"], res)
        self.assertEqual(res["latency_handshake_us"]["count"], hs, res)
        self.assertTrue(0 < res["latency_handshake_us"]["p50"] <= res["latency_handshake_us"]
                        ["max"], res)
        self.assertGreater(res["tls_handshakes_per_s"], 0, res)

    def test_starttls_once_per_persistent_session(self):
        res, err, logged = self.run_tls(self.relay.port, ["--tls", "--conns", "4",
                                                          "--messages", "200"])
        self.assertEqual(res["tls"], "starttls", res)
        self.assertEqual(res["messages"], 200, res)
        self.assertEqual(res["errors"], 0, res)
        self.assertEqual(res["connects"], 4, res)
        self.assertEqual(res["tls_handshakes"], 4, res)
        self.assertEqual(res["tls_resumed"], 0, res)
        self.check_handshakes(res)
        self.assertEqual(logged, 4, "Postfix logged %d TLS sessions" % logged)
        self.assertIn("tls handshakes", err)

    def test_full_handshake_per_message(self):
        res, _, logged = self.run_tls(self.relay.port, [
            "--tls", "--conns", "4", "--messages", "120", "--new-conn-per-message"])
        self.assertEqual(res["messages"], 120, res)
        self.assertEqual(res["errors"], 0, res)
        self.assertGreaterEqual(res["tls_handshakes"], 120, res)
        self.assertEqual(res["tls_handshakes"], res["connects"], res)
        self.assertEqual(res["tls_resumed"], 0, res)
        self.check_handshakes(res)
        self.assertEqual(logged, res["tls_handshakes"])

    def test_resumed_handshakes(self):
        res, _, _ = self.run_tls(self.relay.port, [
            "--tls", "--tls-resume", "--conns", "2", "--messages", "60",
            "--new-conn-per-message"])
        self.assertEqual(res["messages"], 60, res)
        self.assertEqual(res["tls_failures"], 0, res)
        self.assertTrue(res["tls_resume"], res)
        # the first sessions of each loop are full; later ones resume
        self.assertGreater(res["tls_resumed"], res["tls_handshakes"] // 2, res)

    def test_implicit_tls(self):
        res, _, logged = self.run_tls(self.smtps_port, ["--smtps", "--conns", "3",
                                                        "--messages", "90"])
        self.assertEqual(res["tls"], "implicit", res)
        self.assertEqual(res["messages"], 90, res)
        self.assertEqual(res["errors"], 0, res)
        self.assertEqual(res["tls_handshakes"], 3, res)
        self.check_handshakes(res)
        self.assertEqual(logged, 3)

    def test_implicit_tls_against_a_starttls_port_fails(self):
        res, err, _ = self.run_tls(self.relay.port, ["--smtps", "--conns", "1",
                                                     "--messages", "2", "--timeout", "5"],
                                   want_rc=1)
        self.assertEqual(res["messages"], 0, res)
        self.assertEqual(res["tls_handshakes"], 0, res)
        self.assertGreater(res["tls_failures"], 0, res)
        self.assertIn("TLS handshake", err)


if __name__ == "__main__":
    unittest.main()
