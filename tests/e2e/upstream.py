"""Upstream relays for the forward-path end-to-end tests: real programs on
loopback, started and stopped by the tests.

- Sink: Postfix smtp-sink, dumping every transaction into its own file
  (-d DIR/%M.); error injection through extra arguments (-r RCPT, -f RCPT,
  -Q DATA, -w N, ...). A dump holds the envelope as X-* lines, smtp-sink's
  own Received: header, then the message with LF line ends and one extra
  LF after it; Dump.message gives back the SMTP message bytes (CRLF).
- PostfixRelay: a private Postfix instance (its own config, queue and data
  directories in a temporary directory) whose smtpd listens on one loopback
  port, trusts XFORWARD from 127.0.0.0/8, rejects chosen recipients with
  550 through check_recipient_access, and delivers every domain it is told
  about into Maildirs DIR/mail/<domain>/<local>/.
- SourceConn: a client connection from another loopback address, so an
  upstream can tell the original client from the gateway.
- log_events(): the gateway's logfmt stderr as dicts; forward_settings():
  config pairs for a forwarding gateway; wait_for(): bounded polling.

Invariants: every process started here is stopped (also at interpreter
exit), every wait is bounded, and nothing listens beyond 127.0.0.1.
"""

import atexit
import email
import email.policy
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

SINK_READY_TIMEOUT_S = 10.0
POSTFIX_TIMEOUT_S = 60.0

_live = []
_live_lock = threading.Lock()


def _stop_leftovers():
    with _live_lock:
        items = list(_live)
    for item in items:
        try:
            item.stop()
        except Exception:
            pass


atexit.register(_stop_leftovers)


def wait_for(predicate, timeout_s, interval_s=0.1):
    """Polls predicate() until it returns a true value or timeout_s passes;
    returns the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


def port_accepts(port, host=h.LOOPBACK4):
    """True if something answers with an SMTP greeting on host:port."""
    try:
        with h.SmtpConn(port, host=host, timeout=2.0) as c:
            return c.banner is not None  # 220, or 421 under -Q CONNECT
    except (OSError, h.Closed, AssertionError):
        return False


def require_root():
    if os.geteuid() != 0:
        print("e2e: SKIP: the upstream programs are started as root (-u nobody)")
        sys.exit(h.SKIP_EXIT)


# --------------------------------------------------------------------------
# smtp-sink


class Dump:
    """One transaction dumped by smtp-sink."""

    def __init__(self, path, data):
        self.path = path
        self.raw = data
        lines = data.split(b"\n")
        self.mail_args = None
        self.rcpts = []
        self.helo = None
        self.client_addr = None
        i = 0
        while i < len(lines) and lines[i].startswith(b"X-"):
            name, _, value = lines[i].partition(b": ")
            if name == b"X-Mail-Args":
                self.mail_args = value.decode("latin-1")
            elif name == b"X-Rcpt-Args":
                self.rcpts.append(value.decode("latin-1"))
            elif name == b"X-Helo-Args":
                self.helo = value.decode("latin-1")
            elif name == b"X-Client-Addr":
                self.client_addr = value.decode("latin-1")
            i += 1
        if i >= len(lines) or not lines[i].startswith(b"Received: ") \
                or b"(smtp-sink)" not in b"\n".join(lines[i:i + 3]):
            raise AssertionError("%s: no smtp-sink Received: header after the envelope: %r"
                                 % (path, data[:400]))
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
        rest = b"\n".join(lines[i:])
        if not rest.endswith(b"\n\n"):
            raise AssertionError("%s: dump does not end with the message's LF and an extra "
                                 "LF: %r" % (path, data[-200:]))
        # ringmx never forwards a bare CR or LF, so LF <-> CRLF is one to one
        self.message = rest[:-1].replace(b"\n", b"\r\n")

    @property
    def sender(self):
        m = re.match(r"^<([^>]*)>", self.mail_args or "")
        return m.group(1) if m else None

    @property
    def rcpt_addrs(self):
        out = []
        for r in self.rcpts:
            m = re.match(r"^<([^>]*)>", r)
            out.append(m.group(1) if m else r)
        return out

    def __repr__(self):
        return "Dump(%s, from=%r, to=%r, %d bytes)" % (
            os.path.basename(self.path), self.mail_args, self.rcpts, len(self.message))


class Sink:
    """smtp-sink on 127.0.0.1:port dumping into its own directory.

    extra: additional smtp-sink options (list), e.g. ["-r", "RCPT"]. The
    port is chosen free unless given (a restart keeps it).
    """

    def __init__(self, port=None, extra=(), dump_dir=None, backlog=64):
        self.exe = h.require_program("smtp-sink")
        self.port = port or h.free_port()
        self.tmp = tempfile.mkdtemp(prefix="ringmx-sink-")
        os.chmod(self.tmp, 0o755)  # smtp-sink runs as nobody
        self.dump_dir = dump_dir or os.path.join(self.tmp, "dump")
        os.makedirs(self.dump_dir, exist_ok=True)
        nobody = pwd.getpwnam("nobody")
        os.chown(self.dump_dir, nobody.pw_uid, nobody.pw_gid)
        self.extra = list(extra)
        self.backlog = backlog
        self.log_path = os.path.join(self.tmp, "sink.log")
        self.proc = None

    def start(self, extra=None):
        if extra is not None:
            self.extra = list(extra)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self.exe, "-u", "nobody", "-d", os.path.join(self.dump_dir, "%M.")]
                + self.extra + ["%s:%d" % (h.LOOPBACK4, self.port), str(self.backlog)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        with _live_lock:
            _live.append(self)
        deadline = time.monotonic() + SINK_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise h.StartError("smtp-sink exited %d: %s"
                                   % (self.proc.returncode, self.log_text()))
            if port_accepts(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise h.StartError("smtp-sink did not greet on port %d: %s"
                           % (self.port, self.log_text()))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        with _live_lock:
            if self in _live:
                _live.remove(self)

    def cleanup(self):
        self.stop()
        if os.environ.get("RINGMX_E2E_KEEP"):
            sys.stderr.write("e2e: kept %s\n" % self.tmp)
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("latin-1")
        except OSError:
            return ""

    def dump_files(self):
        out = []
        for root, _, files in os.walk(self.dump_dir):
            for name in files:
                out.append(os.path.join(root, name))
        return sorted(out)

    def dumps(self):
        """Every complete transaction so far. smtp-sink writes a dump while
        the message arrives; a file is complete once it ends with the extra
        LF and the sender got its reply, so callers wait for counts."""
        out = []
        for path in self.dump_files():
            with open(path, "rb") as f:
                data = f.read()
            try:
                out.append(Dump(path, data))
            except AssertionError:
                if data.endswith(b"\n\n"):
                    raise
                # still being written
        return out

    def subjects(self):
        """{Subject: copies} over the complete dumps: the tests put a unique
        token in each message's Subject, so this counts deliveries."""
        out = {}
        for d in self.dumps():
            for line in d.message.split(b"\r\n"):
                if line.startswith(b"Subject: "):
                    t = line[len(b"Subject: "):].decode()
                    out[t] = out.get(t, 0) + 1
                    break
        return out


class SourceConn(h.SmtpConn):
    """An SmtpConn whose local end is bound to source_ip (any 127.0.0.0/8
    address works on Linux), so an upstream can tell the original client
    from the gateway."""

    def __init__(self, port, source_ip, host=h.LOOPBACK4, timeout=h.SOCKET_TIMEOUT_S):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.buf = b""
        self.sent = b""
        try:
            self.sock.settimeout(timeout)
            self.sock.bind((source_ip, 0))
            self.sock.connect((host, port))
            self.banner = self.reply()
        except BaseException:
            self.sock.close()
            raise


# --------------------------------------------------------------------------
# a private Postfix instance

_MASTER_CF = """\
{addr}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixRelay:
    """A private Postfix whose smtpd listens on 127.0.0.1:port.

    domains: mail domains it accepts; mailboxes: addresses delivered into
    their own Maildir DIR/mail/<domain>/<local>/ (other addresses of those
    domains go to <domain>/_other/); reject: recipient addresses answered
    with 550 5.1.1 at RCPT; tempfail: recipients answered with 450 4.2.1;
    reject_data_from: senders whose DATA gets 554 5.7.1 (every recipient of
    the transaction fails at once); main_extra: more main.cf lines.
    """

    def __init__(self, domains, mailboxes=(), reject=(), tempfail=(), reject_data_from=(),
                 hostname="relay.e2e.test", main_extra=()):
        self.postfix = h.require_program("postfix")
        h.require_program("postconf")
        self.port = h.free_port()
        self.tmp = tempfile.mkdtemp(prefix="ringmx-postfix-")
        os.chmod(self.tmp, 0o755)
        self.conf_dir = os.path.join(self.tmp, "etc")
        self.queue_dir = os.path.join(self.tmp, "queue")
        self.data_dir = os.path.join(self.tmp, "data")
        self.mail_dir = os.path.join(self.tmp, "mail")
        self.log_path = os.path.join(self.tmp, "maillog")
        self.hostname = hostname
        self.running = False
        for d in (self.conf_dir, self.mail_dir, self.queue_dir):
            os.makedirs(d)
        nobody = pwd.getpwnam("nobody")
        os.chown(self.mail_dir, nobody.pw_uid, nobody.pw_gid)
        self._write_rcpt_access(reject, tempfail)
        with open(os.path.join(self.conf_dir, "data_access"), "w") as f:
            for addr in reject_data_from:
                f.write("/^%s$/ 554 5.7.1 no message data accepted from this sender\n"
                        % re.escape(addr))
        # virtual(8) refuses regexp substitutions for mailbox paths, so each
        # address gets its own line; anything else lands in <domain>/_other/
        with open(os.path.join(self.conf_dir, "mailboxes"), "w") as f:
            for addr in mailboxes:
                local, _, domain = addr.partition("@")
                f.write("%s %s/%s/\n" % (addr, domain, local))
            for domain in domains:
                f.write("@%s %s/_other/\n" % (domain, domain))
        # cleanup(8) logs a WARN header action with the client it was told
        # about: under XFORWARD, the original client's name, address and HELO
        with open(os.path.join(self.conf_dir, "header_checks"), "w") as f:
            f.write("/^X-E2E-Log:/ WARN e2e\n")
        main = [
            "compatibility_level = 3.6",
            "header_checks = regexp:%s/header_checks" % self.conf_dir,
            "queue_directory = %s" % self.queue_dir,
            "data_directory = %s" % self.data_dir,
            "myhostname = %s" % hostname,
            "mydomain = e2e.test",
            "mydestination =",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "smtpd_authorized_xforward_hosts = 127.0.0.0/8",
            "smtpd_recipient_restrictions = check_recipient_access regexp:%s/rcpt_access, "
            "permit_mynetworks, reject_unauth_destination" % self.conf_dir,
            "smtpd_data_restrictions = check_sender_access regexp:%s/data_access"
            % self.conf_dir,
            "virtual_mailbox_domains = %s" % " ".join(domains),
            "virtual_mailbox_base = %s" % self.mail_dir,
            "virtual_mailbox_maps = texthash:%s/mailboxes" % self.conf_dir,
            "virtual_uid_maps = static:%d" % nobody.pw_uid,
            "virtual_gid_maps = static:%d" % nobody.pw_gid,
            "virtual_minimum_uid = 1",
            "alias_maps =",
            "alias_database =",
            "local_recipient_maps =",
            "relayhost =",
            "smtputf8_enable = no",
            "maillog_file = %s" % self.log_path,
            "maillog_file_prefixes = %s" % self.tmp,
            "syslog_name = postfix-e2e-%d" % self.port,
            "smtpd_banner = $myhostname ESMTP",
            "biff = no",
            "queue_run_delay = 1s",
            "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s",
            "message_size_limit = 20480000",
            "smtpd_client_connection_rate_limit = 0",
            "smtpd_client_message_rate_limit = 0",
            "anvil_rate_time_unit = 60s",
        ]
        main.extend(main_extra)  # later lines win in main.cf
        with open(os.path.join(self.conf_dir, "main.cf"), "w") as f:
            f.write("\n".join(main) + "\n")
        with open(os.path.join(self.conf_dir, "master.cf"), "w") as f:
            f.write(_MASTER_CF.format(addr=h.LOOPBACK4, port=self.port))

    def _write_rcpt_access(self, reject, tempfail):
        with open(os.path.join(self.conf_dir, "rcpt_access"), "w") as f:
            for addr in reject:
                f.write("/^%s$/ 550 5.1.1 no such user here\n" % re.escape(addr))
            for addr in tempfail:
                f.write("/^%s$/ 450 4.2.1 mailbox busy, try later\n" % re.escape(addr))

    def set_rcpt_access(self, reject=(), tempfail=()):
        """Replaces the 550/450 recipient lists and reloads Postfix (new
        smtpd processes read the table; old ones exit when idle)."""
        self._write_rcpt_access(reject, tempfail)
        self._postfix("reload")

    def _postfix(self, *args, check=True):
        # postfix writes its errors to stderr only when that is a terminal;
        # otherwise they go to maillog_file (or nowhere before it is known)
        cp = subprocess.run([self.postfix, "-c", self.conf_dir] + list(args),
                            stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=POSTFIX_TIMEOUT_S)
        if check and cp.returncode != 0:
            raise h.StartError("postfix %s exited %d: %s %s; log: %s"
                               % (" ".join(args), cp.returncode,
                                  cp.stdout.decode("latin-1"), cp.stderr.decode("latin-1"),
                                  self.log_text()[-3000:]))
        return cp

    def start(self):
        with _live_lock:
            _live.append(self)
        self.running = True
        self._postfix("start")
        if not wait_for(lambda: port_accepts(self.port), POSTFIX_TIMEOUT_S, 0.2):
            raise h.StartError("postfix smtpd did not greet on port %d; log: %s"
                               % (self.port, self.log_text()[-3000:]))
        return self

    def stop(self):
        if self.running:
            self._postfix("stop", check=False)
            pid_file = os.path.join(self.queue_dir, "pid", "master.pid")
            wait_for(lambda: not _pid_alive(pid_file), 20.0, 0.1)
            self.running = False
        with _live_lock:
            if self in _live:
                _live.remove(self)

    def cleanup(self):
        self.stop()
        if os.environ.get("RINGMX_E2E_KEEP"):
            sys.stderr.write("e2e: kept %s\n" % self.tmp)
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("latin-1")
        except OSError:
            return ""

    def maildir_files(self, address):
        """Files delivered to address (new/ and cur/ of its Maildir)."""
        local, _, domain = address.partition("@")
        base = os.path.join(self.mail_dir, domain, local)
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(base, sub)
            if os.path.isdir(d):
                out.extend(os.path.join(d, n) for n in os.listdir(d))
        return sorted(out)

    def messages(self, address):
        """[(path, bytes)] delivered to address."""
        out = []
        for p in self.maildir_files(address):
            with open(p, "rb") as f:
                out.append((p, f.read()))
        return out


def _pid_alive(pid_file):
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parse_message(data):
    """bytes -> email.message.EmailMessage (default policy)."""
    return email.message_from_bytes(data, policy=email.policy.default)


# --------------------------------------------------------------------------
# gateway log


LOGFMT_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def log_events(srv, event=None):
    """The gateway's stderr as a list of {key: value} dicts (logfmt), only
    those with event=event when given."""
    out = []
    for line in srv.stderr_text().splitlines():
        fields = {}
        for k, v in LOGFMT_RE.findall(line):
            if v.startswith('"') and v.endswith('"') and len(v) >= 2:
                v = v[1:-1]
            fields[k] = v
        if event is None or fields.get("event") == event:
            out.append(fields)
    return out


class ScriptedRelay:
    """A relay that misbehaves on purpose, for what no real relay does: a
    listener on 127.0.0.1 whose every connection runs self.session(conn) in
    a thread of its own. Every socket has a timeout; stop() ends the
    listener, closes every connection and joins the threads (bounded)."""

    JOIN_TIMEOUT_S = 15.0

    def __init__(self, conn_timeout_s=0.2):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((h.LOOPBACK4, 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.conn_timeout_s = conn_timeout_s
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.conns = []
        self.threads = []

    def start(self):
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.stopping.set()
        for t in list(self.threads):
            t.join(timeout=self.JOIN_TIMEOUT_S)
        self.sock.close()
        with self.lock:
            for c in self.conns:
                c.close()

    def session(self, conn):
        raise NotImplementedError

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(self.conn_timeout_s)
            with self.lock:
                self.conns.append(conn)
            t = threading.Thread(target=self.session, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)


def forward_settings(upstreams, retry_min="1s", retry_max="2s", extra=()):
    """Config pairs for a gateway forwarding to the given ports, with small
    segments so reclamation shows quickly."""
    return [("upstream", " ".join("%s:%d" % (h.LOOPBACK4, p) for p in upstreams)),
            ("retry_min", retry_min), ("retry_max", retry_max),
            ("segment_size", "2M"), ("max_message_size", "1M"),
            ("store_max_bytes", "64M"), ("upstream_timeout", "20s")] + list(extra)
