"""End-to-end harness for ringmx: real server processes, real clients.

Each test script imports this module to start its own gateway on a free
loopback port with a config written into a fresh temporary directory (the
data_dir lives inside it), to talk SMTP over raw sockets when a test needs
exact bytes, and to inspect the store with the real ringmx-store tool.

Invariants the harness keeps:
- every socket has a timeout and every wait is bounded;
- a started server is always stopped (SIGTERM, then SIGKILL after a bound),
  also when a test fails or the interpreter exits;
- a server's stderr goes to a file, and a sanitizer report in it, or a
  non-zero exit after SIGTERM, is a test failure (stop_checked()).

Environment: RINGMX_BIN and RINGMX_STORE_BIN name the binaries (ctest sets
them); RINGMX_E2E_KEEP=1 keeps the temporary directories for inspection.
"""

import atexit
import email.utils
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SKIP_EXIT = 77
LOOPBACK4 = "127.0.0.1"
LOOPBACK6 = "::1"

HOSTNAME = "mx.e2e.test"
DOMAIN = "example.com"

READY_TIMEOUT_S = 30.0      # ASan builds pre-zeroing segments start slowly
STOP_TIMEOUT_S = 20.0       # after SIGTERM, before SIGKILL (shutdown_grace is 5s)
SOCKET_TIMEOUT_S = 15.0
TOOL_TIMEOUT_S = 60.0

QUEUED_RE = re.compile(rb"^250 2\.0\.0 Ok: queued as ([0-9A-Fa-f]{16})\r?$")
SANITIZER_MARKERS = (b"AddressSanitizer", b"LeakSanitizer", b"runtime error:",
                     b"UndefinedBehaviorSanitizer")

_live_servers = []
_live_lock = threading.Lock()


def _kill_leftovers():
    with _live_lock:
        servers = list(_live_servers)
    for srv in servers:
        srv.kill_quietly()


atexit.register(_kill_leftovers)


def _binary(var):
    path = os.environ.get(var)
    if not path:
        sys.stderr.write("e2e: %s is not set; run through ctest or set it to the built "
                         "binary\n" % var)
        sys.exit(2)
    if not os.access(path, os.X_OK):
        sys.stderr.write("e2e: %s=%s is not an executable file\n" % (var, path))
        sys.exit(2)
    return path


def ringmx_bin():
    return _binary("RINGMX_BIN")


def scrape_metrics(port):
    """The text of 127.0.0.1:port/metrics."""
    with urllib.request.urlopen("http://%s:%d/metrics" % (LOOPBACK4, port), timeout=10) as r:
        return r.read().decode()


def metric_samples(text):
    """{'name{labels}': float} from an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def metric_value(text, series):
    """The value of one sample (name with its labels), None when absent."""
    return metric_samples(text).get(series)


def bench_bin():
    """The load generator built beside the ringmx binary under test
    (<build dir>/bench/ringmx-bench); exits 2 when it is not built."""
    build_dir = os.path.dirname(os.path.abspath(ringmx_bin()))
    path = os.path.join(build_dir, "bench", "ringmx-bench")
    if not os.access(path, os.X_OK):
        sys.stderr.write("e2e: %s is not built (target ringmx-bench)\n" % path)
        sys.exit(2)
    return path


def store_bin():
    return _binary("RINGMX_STORE_BIN")


def require_program(name):
    """Exits 77 (skipped) when an external program is genuinely absent."""
    path = shutil.which(name)
    if path is None:
        print("e2e: SKIP: %s is not installed (Debian package %s)" % (name, name))
        sys.exit(SKIP_EXIT)
    return path


def ipv6_loopback_available():
    """True if a socket can bind ::1 on this machine."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK6, 0))
        return True
    except OSError:
        return False


def free_port(family=socket.AF_INET):
    """A port that was free a moment ago (bind to port 0, read it, close)."""
    host = LOOPBACK4 if family == socket.AF_INET else LOOPBACK6
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def unique_token(prefix="tok"):
    return "%s-%d-%d-%s" % (prefix, os.getpid(), time.monotonic_ns(), os.urandom(6).hex())


def show_bytes(data, limit=300):
    """Client bytes for a failure message: Python bytes repr, shortened."""
    if len(data) > limit:
        return "(%d bytes, last %d:) ...%r" % (len(data), limit, data[-limit:])
    return repr(data)


# --------------------------------------------------------------------------
# SMTP over a raw socket


class Reply:
    """One SMTP reply (possibly multi-line)."""

    def __init__(self, lines):
        self.lines = lines  # list of bytes, CRLF stripped
        self.code = int(lines[-1][:3])
        text = lines[0][4:]
        first = text.split(b" ", 1)[0]
        self.enhanced = first.decode("latin-1") if re.match(rb"^[245]\.\d{1,3}\.\d{1,3}$", first) else None

    @property
    def text(self):
        return b"\n".join(self.lines).decode("latin-1")

    def __repr__(self):
        return "Reply(%r)" % self.text


class Closed(Exception):
    """The server closed the connection (EOF or reset) while we read."""


class SmtpConn:
    """A raw SMTP client connection: exact bytes out, parsed replies in."""

    def __init__(self, port, host=LOOPBACK4, timeout=SOCKET_TIMEOUT_S, read_banner=True):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.buf = b""
        self.sent = b""  # everything written, for failure messages
        try:
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
            self.banner = self.reply() if read_banner else None
        except BaseException:
            self.sock.close()
            raise

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sent += data
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed("connection reset: %s" % e)
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk

    def readline(self):
        while b"\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise AssertionError("reply line longer than 1 MiB: %s" % show_bytes(self.buf))
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        if line.endswith(b"\r"):
            line = line[:-1]
        return line

    def reply(self):
        lines = []
        while True:
            line = self.readline()
            if not re.match(rb"^[2-5]\d\d[ -]", line) and not re.match(rb"^[2-5]\d\d$", line):
                raise AssertionError("malformed reply line %r (after %s)"
                                     % (line, show_bytes(self.sent)))
            lines.append(line)
            if len(line) == 3 or line[3:4] == b" ":
                return Reply(lines)
            if len(lines) > 100:
                raise AssertionError("reply with more than 100 lines")

    def cmd(self, line):
        """Sends one command line (CRLF added unless present), returns its reply."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        if not line.endswith(b"\r\n"):
            line += b"\r\n"
        self.send(line)
        return self.reply()

    def replies_until_close(self, limit=50):
        """Reads replies until the server closes; returns (replies, closed)."""
        out = []
        try:
            while len(out) < limit:
                out.append(self.reply())
        except Closed:
            return out, True
        except socket.timeout:
            return out, False
        return out, False

    def is_closed(self, wait_s=5.0):
        """True if the server closes the connection within wait_s (pending
        bytes are discarded and reported through leftover)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(wait_s)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass


def ehlo_keywords(reply):
    """EHLO reply -> {KEYWORD: [params]} for the lines after the greeting."""
    out = {}
    for line in reply.lines[1:]:
        parts = line[4:].decode("latin-1").split()
        if parts:
            out[parts[0].upper()] = parts[1:]
    return out


# --------------------------------------------------------------------------
# the gateway process


class StartError(Exception):
    pass


def o_direct_works(directory):
    """Whether a file in directory opens with O_DIRECT (EINVAL: refused)."""
    path = os.path.join(directory, "o_direct_probe")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return False
    finally:
        if os.path.exists(path):
            os.unlink(path)
    os.close(fd)
    return True


class Server:
    """One ringmx process with its own config file and data_dir.

    settings: list of (key, value) pairs written in order (keys may repeat,
    e.g. listen). Unless overridden, the config listens on one free IPv4
    port, uses 2 workers, hostname HOSTNAME, accept_domains DOMAIN and a
    data_dir inside the temporary directory.
    """

    def __init__(self, settings=(), workers=2, listen=None, extra_lines=(), raw_config=None,
                 rlimit_nofile=None):
        self.rlimit_nofile = rlimit_nofile  # RLIMIT_NOFILE for the server only
        self.tmp = tempfile.mkdtemp(prefix="ringmx-e2e-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.config_path = os.path.join(self.tmp, "ringmx.conf")
        self.stderr_path = os.path.join(self.tmp, "stderr.log")
        self.stdout_path = os.path.join(self.tmp, "stdout.log")
        self.proc = None
        self.exit_status = None
        given = {k for k, _ in settings}
        if listen is None and "listen" not in given:
            self.port = free_port()
            listen = ["%s:%d" % (LOOPBACK4, self.port)]
        elif listen is None:
            listen = []
        else:
            self.port = None
        self.listen = list(listen)
        for addr in self.listen:
            host, port = _split_listen(addr)
            if self.port is None and host == LOOPBACK4:
                self.port = port
        self.hostname = dict(settings).get("hostname", HOSTNAME)
        if raw_config is not None:
            text = raw_config
        else:
            lines = ["# written by the ringmx end-to-end harness"]
            defaults = [("hostname", HOSTNAME), ("workers", str(workers)),
                        ("data_dir", self.data_dir), ("fsync", "always"),
                        ("accept_domains", DOMAIN), ("segment_size", "4M"),
                        # a segment must hold the largest message (plus slack)
                        ("max_message_size", "1M"), ("shutdown_grace", "5s")]
            for k, v in defaults:
                if k not in given:
                    lines.append("%s = %s" % (k, v))
            for addr in self.listen:
                lines.append("listen = %s" % addr)
            for k, v in settings:
                lines.append("%s = %s" % (k, v))
            lines.extend(extra_lines)
            text = "\n".join(lines) + "\n"
        with open(self.config_path, "w") as f:
            f.write(text)

    # ---- lifecycle

    def start(self, wait=True, args=None, cwd=None):
        if args is None:
            args = ["-c", self.config_path]
        self.exit_status = None
        err = open(self.stderr_path, "ab")
        out = open(self.stdout_path, "ab")
        preexec = None
        if self.rlimit_nofile is not None:
            import resource
            limit = self.rlimit_nofile

            def preexec():
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        try:
            self.proc = subprocess.Popen([ringmx_bin()] + args, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, cwd=cwd or self.tmp,
                                         preexec_fn=preexec)
        finally:
            err.close()
            out.close()
        with _live_lock:
            _live_servers.append(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT_S, port=None, host=LOOPBACK4):
        """Bounded wait for the banner; raises StartError with stderr if the
        process exits or never greets."""
        port = port or self.port
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._forget()
                raise StartError("ringmx exited with status %d before it was ready; "
                                 "stderr:\n%s" % (self.proc.returncode, self.stderr_text()))
            try:
                c = SmtpConn(port, host=host, timeout=5.0)
            except (OSError, Closed, AssertionError) as e:
                last = e
                time.sleep(0.05)
                continue
            try:
                expected = "220 %s ESMTP ringmx" % self.hostname
                if not c.banner.text.startswith(expected):
                    raise StartError("banner %r, expected it to start with %r"
                                     % (c.banner.text, expected))
                try:
                    c.cmd("QUIT")
                except (OSError, Closed):
                    pass
            finally:
                c.close()
            return
        self.kill_quietly()
        raise StartError("ringmx did not greet on %s:%s within %.0fs (last error: %s); "
                         "stderr:\n%s" % (host, port, timeout, last, self.stderr_text()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT_S):
        """Signals the server and waits (bounded); SIGKILL past the bound.
        Returns the exit status (negative: killed by that signal), or None if
        it had to be killed."""
        if self.proc is None:
            return self.exit_status
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                self._forget()
                self.exit_status = None
                return None
        self.exit_status = self.proc.returncode
        self._forget()
        return self.exit_status

    def wait_exit(self, timeout):
        """Waits (bounded) for the process to exit on its own, without
        signalling it. Returns the exit status, or None if still running."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.exit_status = self.proc.returncode
        self._forget()
        return self.exit_status

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=30)
        self._forget()
        self.exit_status = self.proc.returncode

    def kill_quietly(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=30)
            except Exception:
                pass
        self._forget()

    def _forget(self):
        with _live_lock:
            if self in _live_servers:
                _live_servers.remove(self)

    def stop_checked(self, testcase, sig=signal.SIGTERM, timeout=STOP_TIMEOUT_S):
        """Stops with SIGTERM and fails testcase unless the exit status is 0
        and stderr holds no sanitizer report."""
        was_running = self.running()
        status = self.stop(sig, timeout)
        self.check_stderr(testcase)
        if was_running:
            testcase.assertIsNotNone(status, "ringmx did not exit within %.0fs of signal %d"
                                     % (timeout, sig))
            testcase.assertEqual(status, 0, "ringmx exit status after signal %d; stderr:\n%s"
                                 % (sig, self.stderr_text()[-4000:]))
        return status

    def check_stderr(self, testcase):
        data = self.stderr_bytes()
        for marker in SANITIZER_MARKERS:
            if marker in data:
                testcase.fail("sanitizer report in ringmx stderr:\n%s"
                              % data.decode("latin-1")[-6000:])

    def stderr_bytes(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def stderr_text(self):
        return self.stderr_bytes().decode("latin-1")

    def cleanup(self):
        self.kill_quietly()
        if os.environ.get("RINGMX_E2E_KEEP"):
            sys.stderr.write("e2e: kept %s\n" % self.tmp)
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- clients

    def conn(self, host=LOOPBACK4, port=None, timeout=SOCKET_TIMEOUT_S):
        return SmtpConn(port or self.port, host=host, timeout=timeout)

    # ---- the store tool

    def store(self, *args, check=False):
        """Runs ringmx-store -d data_dir ARGS; returns CompletedProcess (bytes)."""
        cp = subprocess.run([store_bin(), "-d", self.data_dir] + list(args),
                            stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=TOOL_TIMEOUT_S)
        if check and cp.returncode != 0:
            raise AssertionError("ringmx-store %s exited %d; stderr: %s"
                                 % (" ".join(args), cp.returncode,
                                    cp.stderr.decode("latin-1")))
        return cp

    def ls(self):
        """ringmx-store ls -> list of dicts {id, from, to, fields}."""
        cp = self.store("ls", check=True)
        lines = cp.stdout.decode("utf-8", "replace").splitlines()
        if not lines:
            raise AssertionError("ringmx-store ls printed nothing (expected a header line)")
        header = lines[0].split()
        if header != ["QUEUE_ID", "AGE", "SIZE", "FROM", "TO"]:
            raise AssertionError("ringmx-store ls header %r, expected "
                                 "'QUEUE_ID AGE SIZE FROM TO'" % lines[0])
        out = []
        for line in lines[1:]:
            if not line.strip():
                continue
            f = line.split()
            if len(f) < 5 or not re.match(r"^[0-9A-Fa-f]{16}$", f[0]):
                raise AssertionError("ringmx-store ls line %r is not "
                                     "'QUEUE_ID AGE SIZE FROM TO'" % line)
            out.append({"id": f[0].upper(), "from": f[3], "to": f[4], "fields": f})
        return out

    def ls_ids(self):
        return [m["id"] for m in self.ls()]

    def show_body(self, queue_id):
        cp = self.store("show", "--body", queue_id, check=True)
        return cp.stdout

    def show(self, queue_id):
        cp = self.store("show", queue_id, check=True)
        return cp.stdout

    def verify(self):
        return self.store("verify")

    def stats(self):
        cp = self.store("stats", check=True)
        out = {}
        for line in cp.stdout.decode("utf-8", "replace").splitlines():
            f = line.split()
            if len(f) >= 2:
                out[f[0]] = f[1]
        return out

    def segment_bytes(self):
        """Concatenated contents of every segment file (for token counting
        when thousands of messages make one show per message too slow)."""
        chunks = []
        for root, dirs, files in os.walk(self.data_dir):
            if "quarantine" in os.path.relpath(root, self.data_dir).split(os.sep):
                continue
            for name in sorted(files):
                if name.endswith(".seg"):
                    with open(os.path.join(root, name), "rb") as f:
                        chunks.append(f.read())
        return b"\x00".join(chunks)


def _split_listen(addr):
    if addr.startswith("["):
        host, port = addr[1:].split("]:")
        return host, int(port)
    host, port = addr.rsplit(":", 1)
    return host, int(port)


# --------------------------------------------------------------------------
# message checks


def split_received(body):
    """show --body output -> (received_header_unfolded, rest). The Received:
    header must be first; it ends at the first CRLF not followed by SP/HT."""
    if not body.startswith(b"Received:"):
        raise AssertionError("stored body does not start with 'Received:': %s"
                             % show_bytes(body))
    i = 0
    while True:
        j = body.find(b"\r\n", i)
        if j < 0:
            raise AssertionError("Received: header not CRLF-terminated: %s" % show_bytes(body))
        if body[j + 2:j + 3] in (b" ", b"\t"):
            i = j + 2
            continue
        header = body[:j]
        rest = body[j + 2:]
        return re.sub(rb"\r\n([ \t])", rb"\1", header).decode("latin-1"), rest


def split_show(out):
    """ringmx-store show output -> (envelope lines, message bytes)."""
    cands = [(i, i + 2) for i in [out.find(b"\n\n")] if i >= 0]
    cands += [(i, i + 3) for i in [out.find(b"\n\r\n")] if i >= 0]
    if not cands:
        raise AssertionError("show prints no empty line after the envelope: %s"
                             % show_bytes(out))
    end, start = min(cands)
    envelope = out[:end].decode("utf-8", "replace").splitlines()
    return [l.rstrip("\r") for l in envelope], out[start:]


RECEIVED_RE = re.compile(
    r"^Received: from (?P<helo>\S+) \(\[(?P<ip>[^\]]+)\]\)"
    r".*?\bby (?P<by>\S+) \(ringmx\) with (?P<proto>\S+) id (?P<id>[0-9A-Fa-f]{16});"
    r"\s*(?P<date>.+?)\s*$", re.S)


def check_received(testcase, header, helo, ip, queue_id, hostname=HOSTNAME, proto="ESMTP"):
    m = RECEIVED_RE.match(header)
    testcase.assertIsNotNone(m, "Received: header %r does not match 'Received: from <helo> "
                             "([<ip>]) ... by <host> (ringmx) with ESMTP id <id>; <date>'"
                             % header)
    testcase.assertEqual(m.group("helo"), helo, header)
    testcase.assertIn(m.group("ip"), (ip, "IPv6:" + ip), header)
    testcase.assertEqual(m.group("by"), hostname, header)
    testcase.assertEqual(m.group("proto"), proto, header)
    testcase.assertEqual(m.group("id").upper(), queue_id.upper(), header)
    try:
        when = email.utils.parsedate_to_datetime(m.group("date"))
    except (TypeError, ValueError):
        when = None
    testcase.assertIsNotNone(when, "Received: date %r is not an RFC 5322 date" % m.group("date"))
    testcase.assertIsNotNone(when.tzinfo, "Received: date %r has no zone" % m.group("date"))
    skew = abs(when.timestamp() - time.time())
    testcase.assertLess(skew, 600, "Received: date %r is %.0fs off the clock"
                        % (m.group("date"), skew))


def queued_id(testcase, reply, sent=b""):
    """Asserts a '250 2.0.0 Ok: queued as <16 hex>' reply; returns the id."""
    line = reply.lines[-1] if reply.lines else b""
    m = QUEUED_RE.match(line)
    testcase.assertTrue(m is not None and len(reply.lines) == 1,
                        "expected '250 2.0.0 Ok: queued as <16 hex digits>', got %r "
                        "(client sent %s)" % (reply.text, show_bytes(sent)))
    return m.group(1).decode().upper()


def assert_reply(testcase, reply, code, enhanced=None, sent=b"", contains=None):
    what = "expected %d%s, got %r after client bytes %s" % (
        code, " " + enhanced if enhanced else "", reply.text if reply else None,
        show_bytes(sent))
    testcase.assertIsNotNone(reply, what)
    testcase.assertEqual(reply.code, code, what)
    if enhanced is not None:
        testcase.assertEqual(reply.enhanced, enhanced, what)
    if contains is not None:
        testcase.assertIn(contains.lower(), reply.text.lower(), what)


def dot_stuff(body):
    """DATA transparency (RFC 5321 4.5.2) for a CRLF body; adds the final
    CRLF if missing and the terminating '.CRLF'."""
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    lines = body.split(b"\r\n")
    stuffed = b"\r\n".join((b"." + l if l.startswith(b".") else l) for l in lines)
    return stuffed + b".\r\n"


def send_message(testcase, c, body, sender="sender@client.example",
                 rcpts=("user@" + DOMAIN,), helo=None):
    """Runs one DATA transaction on an open SmtpConn (EHLO first if helo is
    given), asserting every reply; returns the queue id."""
    if helo is not None:
        assert_reply(testcase, c.cmd("EHLO " + helo), 250, sent=c.sent)
    r = c.cmd("MAIL FROM:<%s>" % sender)
    assert_reply(testcase, r, 250, "2.1.0", sent=c.sent)
    for rc in rcpts:
        r = c.cmd("RCPT TO:<%s>" % rc)
        assert_reply(testcase, r, 250, "2.1.5", sent=c.sent)
    r = c.cmd("DATA")
    assert_reply(testcase, r, 354, sent=c.sent)
    payload = dot_stuff(body)
    c.send(payload)
    return queued_id(testcase, c.reply(), payload)


# --------------------------------------------------------------------------
# unittest glue


class _Checker:
    """Minimal assert target for checks made outside a test method."""

    def fail(self, msg):
        raise AssertionError(msg)

    def assertEqual(self, a, b, msg=None):
        if a != b:
            raise AssertionError("%r != %r: %s" % (a, b, msg))

    def assertIsNotNone(self, a, msg=None):
        if a is None:
            raise AssertionError(msg)


def stop_and_check(srv, sig=signal.SIGTERM):
    """Stops srv, raises AssertionError on a bad exit or sanitizer report,
    and always removes its temporary directory."""
    try:
        srv.stop_checked(_Checker(), sig)
    finally:
        srv.cleanup()


class ServerTestCase:
    """Mixin for unittest.TestCase: one server for the whole class, started
    with cls.settings (list of (key, value)) and cls.workers, stopped and
    checked (exit 0, no sanitizer report) at the end."""

    settings = []
    workers = 2
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server(settings=cls.settings, workers=cls.workers)
        try:
            cls.server.start()
        except BaseException:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            stop_and_check(cls.server)

    def conn(self, **kw):
        return self.server.conn(**kw)

    def ehlo(self, helo="client.e2e.example", **kw):
        c = self.server.conn(**kw)
        try:
            assert_reply(self, c.banner, 220, sent=b"")
            assert_reply(self, c.cmd("EHLO " + helo), 250, sent=c.sent)
        except BaseException:
            c.close()
            raise
        return c

    def expect(self, c, line, code, enhanced=None, contains=None):
        """Sends line on c, asserts the reply, returns it."""
        r = c.cmd(line)
        assert_reply(self, r, code, enhanced, sent=c.sent, contains=contains)
        return r
