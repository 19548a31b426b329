"""The servers the comparison starts: each on 127.0.0.1 only, from its own
private directory under the run's scratch directory, never touching the
machine's own mail configuration.

- Ringmx: the release binary with a generated config (workers = 2,
  fsync always or never, data_dir in the scratch directory).
- SmtpSink: Postfix smtp-sink, which throws mail away (the ceiling of a
  classic event-driven server); also the upstream every forwarding system
  relays to, started with -c so it counts the messages it received.
- PostfixSmtpd: a private Postfix instance (`postfix -c DIR`, its own
  queue_directory and data_directory) whose smtpd either puts every message
  on hold (accept only) or relays it to an upstream sink.
- Haraka: Haraka 3 from bench/.haraka, two cluster workers, either with
  queue/smtp_forward to an upstream sink or with a queue plugin of our own
  that accepts and discards (its best case).

With tls set (the TLS scenarios), each offers STARTTLS with a certificate
made at run time by make_certificate(): ringmx with tls_cert/tls_key on
an smtp listener, Postfix's smtpd with smtpd_tls_security_level = may,
Haraka with its tls plugin. smtp-sink has no TLS.

Every process started here is stopped by stop() (and, as a last resort, at
interpreter exit): SIGTERM to the process we started, then SIGKILL to any
process of its tree, by pid, that is still the same process.
"""

import atexit
import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time

import measure

LOOPBACK = "127.0.0.1"
DOMAIN = "example.com"
RCPT = "user@" + DOMAIN
SENDER = "bench@client.invalid"
CLIENT_HELO = "bench.client.invalid"
SERVER_NAME = "mx.bench.invalid"

NOFILE_WANT = 262144     # RLIMIT_NOFILE wanted for servers and load generators
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_DIR = os.path.dirname(HERE)
HARAKA_DIR = os.path.join(BENCH_DIR, ".haraka")
HARAKA_BIN = os.path.join(HARAKA_DIR, "node_modules", ".bin", "haraka")
HARAKA_SPEC = "Haraka@3"


class StartError(Exception):
    pass


CERT_KINDS = ("ecdsa", "rsa")    # ECDSA P-256 (the default) or RSA 2048


def make_certificate(directory, kind="ecdsa"):
    """A self-signed certificate for SERVER_NAME and its key, made with
    openssl into directory (cert.pem, key.pem, both readable by the
    servers' unprivileged users). Returns (cert path, key path)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else \
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    cp = subprocess.run([program("openssl"), "req", "-x509", "-nodes", "-days", "2",
                         "-subj", "/CN=" + SERVER_NAME, "-keyout", key, "-out", cert] + newkey,
                        stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    if cp.returncode != 0:
        raise StartError("openssl req exited %d: %s"
                         % (cp.returncode, cp.stderr.decode("latin-1")[-500:]))
    os.chmod(key, 0o644)
    return cert, key


def raise_nofile():
    """Raises this process's open-file limit (inherited by every server
    and load generator it starts) to NOFILE_WANT, or, without the
    privilege to raise the hard limit (CAP_SYS_RESOURCE), to the hard
    limit. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE_WANT, NOFILE_WANT))
        return NOFILE_WANT
    except (ValueError, OSError):
        pass
    if hard == resource.RLIM_INFINITY:
        hard = NOFILE_WANT
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def program(name):
    for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/usr/bin"]:
        p = os.path.join(d, name)
        if d and os.access(p, os.X_OK):
            return p
    raise StartError("%s not found (make bench-deps installs it)" % name)


def greets(port, timeout_s=2.0):
    """True when something on port sends a 220 greeting."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout_s) as s:
            data = b""
            while b"\n" not in data:
                chunk = s.recv(512)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(b"220")
    except OSError:
        return False


def _start_time(pid):
    f = measure._stat_fields(pid)
    return None if f is None else f[19]


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


def stop_all():
    """Stops every server still running (on an interrupted run)."""
    _stop_leftovers()


class Server:
    """Base: a server process (tree) listening on self.port."""

    name = "server"
    can_forward = False
    can_tls = False

    def __init__(self, scratch, tls=None):
        self.scratch = scratch
        self.tls = tls               # None, or the kind of certificate
        self.cert = self.key = None
        self.tmp = None
        self.proc = None
        self.port = None
        self.log_path = None

    def _mkdir(self, prefix):
        self.tmp = os.path.join(self.scratch, "%s-%d" % (prefix, free_port()))
        os.makedirs(self.tmp)
        os.chmod(self.tmp, 0o755)
        self.log_path = os.path.join(self.tmp, "server.log")
        if self.tls:
            if not self.can_tls:
                raise StartError("%s has no TLS" % self.name)
            self.cert, self.key = make_certificate(self.tmp, self.tls)

    def _register(self):
        with _live_lock:
            _live.append(self)

    def _forget(self):
        with _live_lock:
            if self in _live:
                _live.remove(self)

    def root_pid(self):
        return self.proc.pid if self.proc else None

    def tree(self):
        return measure.ProcTree(self.root_pid())

    def _spawn(self, argv, cwd=None):
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, cwd=cwd)
        finally:
            log.close()
        self._register()

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise StartError("%s exited %d: %s" % (self.name, self.proc.returncode,
                                                       self.log_tail()))
            if greets(self.port):
                return
            time.sleep(0.1)
        raise StartError("%s did not greet on port %d: %s"
                         % (self.name, self.port, self.log_tail()))

    def _snapshot(self):
        pid = self.root_pid()
        if pid is None:
            return []
        return [(p, _start_time(p)) for p in measure.ProcTree(pid).pids()]

    def _graceful_stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass

    def stop(self):
        snap = self._snapshot()
        self._graceful_stop()
        # whatever of the tree survived, by pid, if still the same process
        for pid, started in snap:
            if started is not None and _start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None
        self._forget()

    def cleanup(self, keep=False):
        self.stop()
        if self.tmp and not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n))
                return f.read().decode("latin-1")
        except (OSError, TypeError):
            return ""


# ------------------------------------------------------------------- ringmx

class Ringmx(Server):
    """ringmx with workers = 2 and fsync = always (durable) or never."""

    can_tls = True

    def __init__(self, scratch, binary, fsync, workers=2, tls=None, extra_lines=()):
        super().__init__(scratch, tls)
        self.binary = binary
        self.fsync = fsync
        self.workers = workers
        self.extra_lines = list(extra_lines)  # config lines after the defaults
        self.name = "ringmx-durable" if fsync == "always" else "ringmx-nofsync"
        self.can_forward = True
        self.metrics_port = None

    def config_lines(self, upstream_port):
        lines = [
            "hostname = %s" % SERVER_NAME,
            "workers = %d" % self.workers,
            "listen = %s:%d" % (LOOPBACK, self.port),
            "data_dir = %s" % os.path.join(self.tmp, "data"),
            "fsync = %s" % self.fsync,
            "accept_domains = %s" % DOMAIN,
            "metrics_listen = %s:%d" % (LOOPBACK, self.metrics_port),
            "max_connections = 120000",
            "store_max_bytes = 24G",
            "shutdown_grace = 5s",
        ]
        if upstream_port:
            lines.append("upstream = %s:%d" % (LOOPBACK, upstream_port))
        if self.tls:
            lines += ["tls_cert = %s" % self.cert, "tls_key = %s" % self.key]
        return lines + self.extra_lines

    def start(self, upstream_port=None, procs=None):
        self._mkdir("ringmx")
        self.port = free_port()
        self.metrics_port = free_port()
        conf = os.path.join(self.tmp, "ringmx.conf")
        with open(conf, "w") as f:
            f.write("\n".join(self.config_lines(upstream_port)) + "\n")
        self._spawn([self.binary, "-c", conf])
        self._wait_ready()
        return self


# ---------------------------------------------------------------- smtp-sink

class SmtpSink(Server):
    """Postfix smtp-sink: takes mail and throws it away. With count=True
    it writes its running counter (-c) to DIR/counter, read by
    measure.SinkCounter."""

    name = "smtp-sink"

    def __init__(self, scratch, count=False, max_conns=120000):
        super().__init__(scratch)
        self.count = count
        self.max_conns = max_conns
        self.counter_path = None

    def start(self, upstream_port=None, procs=None):
        exe = program("smtp-sink")
        self._mkdir("sink")
        self.port = free_port()
        argv = [exe, "-u", "nobody", "-m", str(self.max_conns), "-t", "300"]
        out = subprocess.DEVNULL
        if self.count:
            argv.append("-c")
            self.counter_path = os.path.join(self.tmp, "counter")
            out = open(self.counter_path, "wb")
        argv += ["%s:%d" % (LOOPBACK, self.port), "4096"]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=log)
        finally:
            log.close()
            if out is not subprocess.DEVNULL:
                out.close()
        self._register()
        self._wait_ready()
        return self

    def counter(self):
        return measure.SinkCounter(self.counter_path)


# ------------------------------------------------------------------ Postfix

_MASTER_CF = """\
{addr}:{port} inet n - n - {maxproc} smtpd
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
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"""


class PostfixSmtpd(Server):
    """A private Postfix: smtpd on 127.0.0.1, its real queue (cleanup
    fsyncs every queue file before smtpd answers 250). Without an upstream
    every message goes to the hold queue (check_client_access static:HOLD),
    so nothing is delivered and only acceptance is measured; with one,
    mail for the test domain is relayed to it."""

    name = "postfix"
    can_forward = True
    can_tls = True
    PROCS_DEFAULT = 250

    def __init__(self, scratch, tls=None):
        super().__init__(scratch, tls)
        self.conf_dir = None
        self.queue_dir = None
        self.procs = self.PROCS_DEFAULT

    def _postfix(self, *args, check=True):
        cp = subprocess.run([program("postfix"), "-c", self.conf_dir] + list(args),
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        if check and cp.returncode != 0:
            raise StartError("postfix %s exited %d: %s %s; log: %s"
                             % (" ".join(args), cp.returncode, cp.stdout.decode("latin-1"),
                                cp.stderr.decode("latin-1"), self.log_tail()))
        return cp

    def start(self, upstream_port=None, procs=None):
        self._mkdir("postfix")
        self.port = free_port()
        self.procs = procs or self.PROCS_DEFAULT
        self.conf_dir = os.path.join(self.tmp, "etc")
        self.queue_dir = os.path.join(self.tmp, "queue")
        os.makedirs(self.conf_dir)
        os.makedirs(self.queue_dir)
        self.log_path = os.path.join(self.tmp, "maillog")
        relay = "[%s]:%d" % (LOOPBACK, upstream_port) if upstream_port else "[%s]:9" % LOOPBACK
        hold = "" if upstream_port else "check_client_access static:HOLD, "
        main = [
            "compatibility_level = 3.6",
            "queue_directory = %s" % self.queue_dir,
            "data_directory = %s" % os.path.join(self.tmp, "data"),
            "myhostname = %s" % SERVER_NAME,
            "mydomain = bench.invalid",
            "mydestination =",
            "inet_interfaces = %s" % LOOPBACK,
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "relay_domains = %s" % DOMAIN,
            "relayhost = %s" % relay,
            "smtpd_recipient_restrictions = %spermit_mynetworks, reject_unauth_destination"
            % hold,
            "smtpd_peername_lookup = no",
            "smtp_dns_support_level = disabled",
            "default_process_limit = %d" % self.procs,
            # without delivery (hold) no queue manager hands out in-flow
            # tokens, and the default would pause every smtpd for 1 s
            "in_flow_delay = %s" % ("1s" if upstream_port else "0"),
            "alias_maps =",
            "alias_database =",
            "local_recipient_maps =",
            "smtputf8_enable = no",
            "maillog_file = %s" % self.log_path,
            "maillog_file_prefixes = %s" % self.tmp,
            "syslog_name = postfix-bench-%d" % self.port,
            "smtpd_banner = $myhostname ESMTP",
            "biff = no",
            "message_size_limit = 20480000",
            "smtpd_client_connection_count_limit = 0",
            "smtpd_client_connection_rate_limit = 0",
            "smtpd_client_message_rate_limit = 0",
            "smtpd_timeout = 300s",
        ]
        if self.tls:
            # opportunistic TLS as an MX offers it; no session cache, so
            # a client that does not resume gets full handshakes
            main += ["smtpd_tls_security_level = may",
                     "smtpd_tls_cert_file = %s" % self.cert,
                     "smtpd_tls_key_file = %s" % self.key,
                     "smtpd_tls_loglevel = 0",
                     "smtpd_tls_received_header = yes"]
        with open(os.path.join(self.conf_dir, "main.cf"), "w") as f:
            f.write("\n".join(main) + "\n")
        with open(os.path.join(self.conf_dir, "master.cf"), "w") as f:
            f.write(_MASTER_CF.format(addr=LOOPBACK, port=self.port, maxproc=self.procs))
        self._register()
        self._postfix("start")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not greets(self.port):
            if time.monotonic() > deadline:
                raise StartError("postfix smtpd did not greet on port %d; log: %s"
                                 % (self.port, self.log_tail()))
            time.sleep(0.2)
        return self

    def root_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError, TypeError):
            return None

    def _graceful_stop(self):
        if self.conf_dir is None:
            return
        pid = self.root_pid()
        self._postfix("stop", check=False)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while pid is not None and time.monotonic() < deadline:
            if measure._stat_fields(pid) is None:
                break
            time.sleep(0.1)

    def stop(self):
        super().stop()
        self.conf_dir = None


# ------------------------------------------------------------------- Haraka

_NO_RDNS_PLUGIN = """\
// bench_no_rdns: answers Haraka's lookup_rdns hook at once, so no reverse
// DNS query is made for a client (Postfix runs with smtpd_peername_lookup
// = no and ringmx makes none; the query would time each connection on the
// resolver).
exports.hook_lookup_rdns = function (next) {
    next(OK, 'unknown')
}
"""

_DISCARD_PLUGIN = """\
// bench_discard: a queue plugin that accepts every message and throws it
// away - Haraka's best case, nothing written and nothing relayed.
exports.register = function () {
    this.register_hook('queue', 'discard')
}

exports.discard = function (next) {
    next(OK, 'discarded')
}
"""


def haraka_install():
    """npm install Haraka@3 into bench/.haraka (git-ignored) unless it is
    there already. Returns the haraka executable."""
    if os.access(HARAKA_BIN, os.X_OK):
        return HARAKA_BIN
    os.makedirs(HARAKA_DIR, exist_ok=True)
    print("compare: installing %s into %s" % (HARAKA_SPEC, HARAKA_DIR), flush=True)
    cp = subprocess.run([program("npm"), "install", "--no-audit", "--no-fund", HARAKA_SPEC],
                        cwd=HARAKA_DIR, stdin=subprocess.DEVNULL, timeout=1800)
    if cp.returncode != 0 or not os.access(HARAKA_BIN, os.X_OK):
        raise StartError("npm install %s failed (exit %d)" % (HARAKA_SPEC, cp.returncode))
    return HARAKA_BIN


def haraka_version():
    import json
    try:
        with open(os.path.join(HARAKA_DIR, "node_modules", "Haraka", "package.json")) as f:
            return json.load(f).get("version")
    except (OSError, ValueError):
        return None


class Haraka(Server):
    """Haraka 3, nodes = 2 (cluster), log level warn, no reverse DNS
    lookups (bench_no_rdns). mode "forward": queue/smtp_forward to the
    upstream given to start(); mode "discard": the bench_discard queue
    plugin."""

    can_tls = True

    def __init__(self, scratch, mode, nodes=2, tls=None):
        super().__init__(scratch, tls)
        self.mode = mode
        self.nodes = nodes
        self.name = "haraka-" + mode
        self.can_forward = mode == "forward"
        self.needs_upstream = mode == "forward"

    def start(self, upstream_port=None, procs=None):
        exe = haraka_install()
        if self.mode == "forward" and not upstream_port:
            raise StartError("haraka-forward needs an upstream")
        self._mkdir("haraka")
        self.port = free_port()
        inst = os.path.join(self.tmp, "instance")
        cp = subprocess.run([exe, "-i", inst], stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=120)
        if cp.returncode != 0:
            raise StartError("haraka -i exited %d: %s" % (cp.returncode, cp.stderr[-2000:]))
        cfg = os.path.join(inst, "config")
        files = {
            "smtp.ini": "listen=%s:%d\nnodes=%d\ninactivity_timeout=300\n"
                        % (LOOPBACK, self.port, self.nodes),
            "log.ini": "[main]\nlevel=warn\ntimestamps=false\nformat=default\n",
            "me": SERVER_NAME + "\n",
            "host_list": DOMAIN + "\n",
            "plugins": "bench_no_rdns\n%srcpt_to.in_host_list\n%s\n"
                       % ("tls\n" if self.tls else "",
                          "queue/smtp_forward" if self.mode == "forward" else "bench_discard"),
        }
        if self.tls:
            # the tls plugin reads key and cert by name from the config dir
            files["tls.ini"] = "[main]\nkey=tls_key.pem\ncert=tls_cert.pem\n"
            for name, path in (("tls_key.pem", self.key), ("tls_cert.pem", self.cert)):
                with open(path) as f:
                    files[name] = f.read()
        if self.mode == "forward":
            files["smtp_forward.ini"] = ("[main]\nhost=%s\nport=%d\nenable_tls=false\n"
                                         % (LOOPBACK, upstream_port))
        for name, text in files.items():
            with open(os.path.join(cfg, name), "w") as f:
                f.write(text)
        with open(os.path.join(inst, "plugins", "bench_discard.js"), "w") as f:
            f.write(_DISCARD_PLUGIN)
        with open(os.path.join(inst, "plugins", "bench_no_rdns.js"), "w") as f:
            f.write(_NO_RDNS_PLUGIN)
        self._spawn([exe, "-c", inst], cwd=inst)
        self._wait_ready()
        # every cluster worker listens once the master's first one greets;
        # give the second a moment so the first runs do not miss it
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.tree().sample().procs < self.nodes + 1:
            time.sleep(0.1)
        time.sleep(0.5)
        return self


def make_system(name, scratch, ringmx_binary, tls=None, workers=2, extra_lines=()):
    """The system called name; tls: None, or the certificate kind it serves
    STARTTLS with; workers and extra_lines (config lines) apply to ringmx."""
    if name == "ringmx-durable":
        return Ringmx(scratch, ringmx_binary, "always", workers=workers, tls=tls,
                      extra_lines=extra_lines)
    if name == "ringmx-nofsync":
        return Ringmx(scratch, ringmx_binary, "never", workers=workers, tls=tls,
                      extra_lines=extra_lines)
    if name == "smtp-sink":
        if tls:
            raise StartError("smtp-sink has no TLS")
        return SmtpSink(scratch)
    if name == "postfix":
        return PostfixSmtpd(scratch, tls=tls)
    if name == "haraka-forward":
        return Haraka(scratch, "forward", tls=tls)
    if name == "haraka-discard":
        return Haraka(scratch, "discard", tls=tls)
    raise ValueError(name)


SYSTEMS = ["ringmx-durable", "ringmx-nofsync", "smtp-sink", "postfix", "haraka-forward",
           "haraka-discard"]
