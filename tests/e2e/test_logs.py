#!/usr/bin/env python3
"""Structured logs end to end, with log_format = logfmt and = json.

A raw-socket client sends mail with hostile text where the wire allows it:
EHLO names followed by 'level=error event=forged "q" \\ k="v"' (the session
takes the first word only), refused EHLO and MAIL arguments full of quotes,
'=' and control bytes, and accepted reverse paths whose quoted local parts
hold spaces, '=', escaped quotes and backslashes, 'level=error
event=forged', and 8-bit UTF-8 (with SMTPUTF8); also the null path <>.
After a clean stop (which flushes the workers' log buffers), EVERY line the
server wrote on stderr must parse: logfmt with the strict parser below (the
grammar of core/log.h: one space between key=value pairs, bare values only
of the safe bytes, quoted values only with \\" \\\\ \\n \\r \\t \\xHH), JSON with
json.loads. Every line is 7-bit, carries ts (RFC 3339 UTC with milliseconds),
level and event; no line's event is "forged" and no line has a second level.
Each accepted message has exactly one event=message_accepted line with its
queue id, its reverse path and HELO exactly as sent (after unescaping; JSON
strings map each byte to the code point of the same number), its recipient
count, body size, client address and tls=no.

Under load, with both workers logging at once (Postfix's smtp-source, a new
connection per message), no line may vanish or be cut, whatever stderr is:
a regular file opened WITHOUT O_APPEND (what `2>FILE` gives), a pipe, and a
non-blocking pipe whose reader stops for a while (the writes meet EAGAIN
and must be retried, not dropped). Every message the store holds has its
message_accepted line, every line parses, and
ringmx_log_lines_dropped_total stays 0.
"""

import fcntl
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"error", "warn", "info", "debug"}
KEY_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
BARE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                       b"-._@:/+[]<>,;~!*%#&?'")
ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("n"): b"\n", ord("r"): b"\r",
           ord("t"): b"\t"}
HEX = b"0123456789abcdefABCDEF"
LINE_MAX = 4096

GOOD_HELO = "good.example"
HOSTILE_HELO_TAIL = ' level=error event=forged "q" \\ k="v" \xe9'
BODY = b"Subject: logs\r\n\r\nhostile text lives in the envelope\r\n"
# Reverse paths (as the client writes them inside <>) that the server accepts.
FROMS = [
    (b'"a=b level=error event=forged \\"x\\\\y\\" k=\\"v\\""@client.example', False),
    ('"\u00e9=1 level=error event=forged \u00fc"@client.example'.encode("utf-8"), True),
    (b"", False),
    (b"plain@client.example", False),
]


def parse_logfmt(line):
    """bytes (no newline) -> list of (key, value bytes, quoted); raises
    ValueError on anything the grammar does not allow."""
    pairs = []
    i, n = 0, len(line)
    while i < n:
        k = i
        while i < n and line[i] in KEY_BYTES:
            i += 1
        if i == k or i >= n or line[i] != ord("="):
            raise ValueError("no key=value at byte %d" % k)
        key = line[k:i].decode("ascii")
        i += 1
        val = bytearray()
        quoted = i < n and line[i] == ord('"')
        if quoted:
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unterminated value of %s" % key)
                c = line[i]
                if c == ord('"'):
                    i += 1
                    break
                if c < 0x20 or c >= 0x7f:
                    raise ValueError("raw byte %#x in %s" % (c, key))
                if c != ord("\\"):
                    val.append(c)
                    i += 1
                    continue
                e = line[i + 1] if i + 1 < n else None
                if e in ESCAPES:
                    val += ESCAPES[e]
                    i += 2
                elif e == ord("x") and i + 3 < n and line[i + 2] in HEX and line[i + 3] in HEX:
                    val.append(int(line[i + 2:i + 4], 16))
                    i += 4
                else:
                    raise ValueError("bad escape in %s" % key)
        else:
            while i < n and line[i] != ord(" "):
                if line[i] not in BARE_BYTES:
                    raise ValueError("byte %#x in bare value of %s" % (line[i], key))
                val.append(line[i])
                i += 1
            if not val:
                raise ValueError("empty bare value of %s" % key)
        pairs.append((key, bytes(val), quoted))
        if i < n:
            if line[i] != ord(" ") or i + 1 == n:
                raise ValueError("no single space after %s" % key)
            i += 1
    return pairs


def json_pairs(line):
    """bytes (no newline) -> list of (key, value bytes or int, quoted)."""
    pairs = []

    def hook(items):
        for k, v in items:
            if isinstance(v, str):
                pairs.append((k, v.encode("latin-1"), True))
            else:
                pairs.append((k, v, False))
        return dict(items)

    obj = json.loads(line.decode("ascii"), object_pairs_hook=hook)
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    return pairs


class LogScenario:
    """Runs the hostile client once against a server with log_format =
    cls.log_format, stops it, and keeps what it wrote."""

    log_format = None

    @classmethod
    def setUpClass(cls):
        cls.server = h.Server(settings=[("log_format", cls.log_format)], workers=2)
        cls.sent = []  # (queue id, reverse path bytes, recipients)
        try:
            cls.server.start()
            cls.run_client()
        finally:
            stop_error = None
            try:
                cls.server.stop_checked(unittest.TestCase())
            except AssertionError as e:
                stop_error = e
            cls.stderr = cls.server.stderr_bytes()
            cls.server.cleanup()
            if stop_error:
                raise stop_error

    @classmethod
    def run_client(cls):
        check = unittest.TestCase()  # asserts outside a test method
        for idx, (path, utf8) in enumerate(FROMS):
            with cls.server.conn() as c:
                # Refused greetings and commands with hostile text.
                for bad in (b'EHLO bad"name=1 level=error', b"EHLO a=b",
                            b"EHLO \x01\x7fevent=forged", b"HELO x\\y"):
                    r = c.cmd(bad)
                    if r.code not in (500, 501):
                        raise AssertionError("%r got %r" % (bad, r.text))
                r = c.cmd(("EHLO " + GOOD_HELO + HOSTILE_HELO_TAIL).encode("latin-1"))
                h.assert_reply(check, r, 250, sent=c.sent)
                r = c.cmd(b'MAIL FROM:<a" b@x level=error event=forged>')
                if r.code < 500:
                    raise AssertionError("malformed MAIL accepted: %r" % r.text)
                rcpts = 1 + idx % 2
                r = c.cmd(b"MAIL FROM:<" + path + b">" + (b" SMTPUTF8" if utf8 else b""))
                h.assert_reply(check, r, 250, sent=c.sent)
                for k in range(rcpts):
                    r = c.cmd("RCPT TO:<user%d@%s>" % (k, h.DOMAIN))
                    h.assert_reply(check, r, 250, sent=c.sent)
                r = c.cmd(b"RCPT TO:<victim@elsewhere.example level=error>")
                if r.code < 400:
                    raise AssertionError("hostile RCPT accepted: %r" % r.text)
                h.assert_reply(check, c.cmd("DATA"), 354, sent=c.sent)
                payload = h.dot_stuff(BODY)
                c.send(payload)
                qid = h.queued_id(check, c.reply(), payload)
                cls.sent.append((qid, path, rcpts))
                c.cmd("QUIT")

    def lines(self):
        data = self.stderr
        self.assertTrue(data.endswith(b"\n"), "stderr does not end with a newline: %r"
                        % data[-200:])
        return data[:-1].split(b"\n")

    def pairs(self, line):
        raise NotImplementedError

    def all_pairs(self):
        out = []
        for no, line in enumerate(self.lines(), 1):
            self.assertLessEqual(len(line) + 1, LINE_MAX, "line %d too long" % no)
            bad = [b for b in line if b < 0x20 or b >= 0x7f]
            self.assertFalse(bad, "line %d is not 7-bit clean: %r" % (no, line))
            try:
                pairs = self.pairs(line)
            except ValueError as e:
                self.fail("%s line %d does not parse (%s): %r"
                          % (self.log_format, no, e, line))
            out.append((no, line, pairs))
        return out

    def test_every_line_parses(self):
        parsed = self.all_pairs()
        self.assertGreater(len(parsed), 3, "hardly any log lines: %r" % self.stderr[-2000:])
        for no, line, pairs in parsed:
            keys = [k for k, _, _ in pairs]
            self.assertEqual(keys[:3], ["ts", "level", "event"],
                             "line %d does not start with ts, level, event: %r" % (no, line))
            values = {k: v for k, v, _ in reversed(pairs)}  # first occurrence wins
            self.assertRegex(values["ts"].decode("ascii"), TS_RE, "line %d: %r" % (no, line))
            self.assertIn(values["level"].decode("ascii"), LEVELS, "line %d: %r" % (no, line))
            self.assertNotEqual(values["event"], b"forged", "forged event, line %d: %r"
                                % (no, line))
            self.assertEqual(keys.count("level"), 1, "second level on line %d: %r"
                             % (no, line))
            self.assertEqual(keys.count("event"), 1, "second event on line %d: %r"
                             % (no, line))
        events = {dict((k, v) for k, v, _ in p)["event"] for _, _, p in parsed}
        for want in (b"listening", b"shutdown", b"stopped"):
            self.assertIn(want, events, "no event=%s line" % want.decode())

    def test_message_accepted(self):
        accepted = {}
        for no, line, pairs in self.all_pairs():
            d = {k: (v, q) for k, v, q in pairs}
            if d.get("event", (None,))[0] == b"message_accepted":
                qid = d["queue_id"][0].decode("ascii").upper()
                self.assertNotIn(qid, accepted, "two message_accepted lines for %s" % qid)
                accepted[qid] = (d, line)
        self.assertEqual(len(accepted), len(self.sent),
                         "message_accepted lines for %s, sent %s:\n%s"
                         % (sorted(accepted), [s[0] for s in self.sent],
                            self.stderr.decode("latin-1")[-3000:]))
        for qid, path, rcpts in self.sent:
            self.assertIn(qid, accepted)
            d, line = accepted[qid]
            self.assertEqual(d["from"][0], path, "from of %s: %r" % (qid, line))
            self.assertEqual(d["helo"][0], GOOD_HELO.encode(), line)
            self.assertEqual(d["client"][0], h.LOOPBACK4.encode(), line)
            self.assertEqual(d["tls"][0], b"no", line)
            self.assertEqual(self.number(d["rcpts"]), rcpts, line)
            self.assertEqual(self.number(d["size"]), len(BODY), line)
            self.assertEqual(d["level"][0], b"info", line)


class LogfmtTest(LogScenario, unittest.TestCase):
    log_format = "logfmt"

    def pairs(self, line):
        return parse_logfmt(line)

    def number(self, value):
        v, quoted = value
        self.assertFalse(quoted)
        return int(v)


class JsonTest(LogScenario, unittest.TestCase):
    log_format = "json"

    def pairs(self, line):
        try:
            return json_pairs(line)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError("not JSON: %s" % e)

    def number(self, value):
        v, quoted = value
        self.assertFalse(quoted, "a count is a JSON number")
        return v



# ---- every line arrives, under load, whatever stderr is ------------------------

SMTP_SOURCE = "/usr/sbin/smtp-source"
LOAD_SESSIONS = 100
LOAD_MESSAGES = 10000      # about 4 s here; 3000 already lost lines to overlapping writes
LOAD_BODY_BYTES = 200
LOAD_TIMEOUT_S = 45
PIPE_SMALL_BYTES = 4096    # F_SETPIPE_SZ: one page, which one filler write fills
READER_PAUSE_S = 1.0       # well below the time a stalled write is waited for
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def http_get(port, path, timeout=10):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.read().decode()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in the scrape" % name)


def filler_lines(total_bytes):
    """Whole logfmt lines of exactly total_bytes in all."""
    out = b""
    n = 0
    while len(out) < total_bytes:
        head = b"ts=2026-01-01T00:00:00.000Z level=info event=test_filler n=%d pad=" % n
        room = total_bytes - len(out) - len(head) - 1
        if room > 300:
            room = 200
        out += head + b"x" * max(room, 1) + b"\n"
        n += 1
    if len(out) != total_bytes:
        raise AssertionError("filler of %d bytes, not %d" % (len(out), total_bytes))
    return out


class StderrServer(h.Server):
    """A server whose stderr is a descriptor the test chose. (The harness's
    own start() opens its file with O_APPEND, which hides the defect of
    overlapping writes.) stderr_bytes() reads self.stderr_path, which the
    test points at the file, or at the file its pipe reader fills."""

    stderr_fd = None

    def start(self, wait=True, args=None, cwd=None):
        self.exit_status = None
        self.proc = subprocess.Popen([h.ringmx_bin(), "-c", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr_fd, cwd=self.tmp)
        with h._live_lock:
            h._live_servers.append(self)
        if wait:
            self.wait_ready()
        return self


class PipeReader(threading.Thread):
    """Copies a pipe into a file until end of file. While `paused` is set it
    reads nothing (and sets `idle`), so the pipe fills up."""

    def __init__(self, read_fd, path):
        super().__init__(daemon=True)
        self.read_fd = read_fd
        self.path = path
        self.paused = threading.Event()
        self.idle = threading.Event()

    def run(self):
        with open(self.path, "wb") as out:
            while True:
                if self.paused.is_set():
                    self.idle.set()
                    time.sleep(0.01)
                    continue
                self.idle.clear()
                ready, _, _ = select.select([self.read_fd], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self.read_fd, 65536)
                if not data:
                    break
                out.write(data)
                out.flush()
        os.close(self.read_fd)


class ConcurrentLinesTest(unittest.TestCase):
    """Both workers log at once; no line may vanish or be cut."""

    @classmethod
    def setUpClass(cls):
        if not os.access(SMTP_SOURCE, os.X_OK):
            raise unittest.SkipTest("%s not installed (Debian package postfix)" % SMTP_SOURCE)

    def setUp(self):
        self.mport = h.free_port()
        self.srv = StderrServer(settings=[("metrics_listen", "127.0.0.1:%d" % self.mport)],
                                workers=2)
        self.addCleanup(self.srv.cleanup)
        self.reader = None

    def start_on_file(self):
        """stderr: a regular file opened without O_APPEND, as `2>FILE` does."""
        fd = os.open(self.srv.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.assertFalse(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)
        self.srv.stderr_fd = fd
        try:
            self.srv.start()
        finally:
            os.close(fd)

    def start_on_pipe(self, nonblocking=False):
        """stderr: a pipe read by a thread. Returns the test's own copy of
        the write end when nonblocking (the caller closes it), else None."""
        r, w = os.pipe()
        if nonblocking:
            fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SMALL_BYTES)
            os.set_blocking(w, False)  # the flag is the shared description's
        self.reader = PipeReader(r, self.srv.stderr_path)
        self.reader.start()
        self.srv.stderr_fd = w
        try:
            self.srv.start()
        finally:
            if not nonblocking:
                os.close(w)
        return w if nonblocking else None

    def load(self, messages=LOAD_MESSAGES):
        """smtp-source: `messages` messages, a new connection for each, from
        LOAD_SESSIONS sessions at once."""
        cmd = [SMTP_SOURCE, "-s", str(LOAD_SESSIONS), "-m", str(messages),
               "-l", str(LOAD_BODY_BYTES), "-M", "load.example",
               "-f", "sender@client.example", "-t", "user@" + h.DOMAIN,
               "%s:%d" % (h.LOOPBACK4, self.srv.port)]
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=LOAD_TIMEOUT_S)
        self.assertEqual(cp.returncode, 0, "smtp-source: %r" % cp.stderr[-2000:])

    def dropped(self):
        return metric(http_get(self.mport, "/metrics"), "ringmx_log_lines_dropped_total")

    def check_lines(self, dropped):
        """After the stop: every stored message has its one message_accepted
        line, every line parses, nothing was dropped. Returns the events."""
        if self.reader:
            self.reader.join(timeout=30)
            self.assertFalse(self.reader.is_alive(), "stderr pipe never reached end of file")
        stored = set(self.srv.ls_ids())
        data = self.srv.stderr_bytes()
        self.assertGreater(len(stored), 0)
        self.assertEqual(dropped, 0, "log lines dropped")
        self.assertTrue(data.endswith(b"\n"), "stderr ends inside a line: %r" % data[-200:])
        logged = []
        events = []
        for no, line in enumerate(data[:-1].split(b"\n"), 1):
            try:
                pairs = parse_logfmt(line)
            except ValueError as e:
                self.fail("line %d is not whole (%s): %r" % (no, e, line[:300]))
            self.assertEqual([k for k, _, _ in pairs[:3]], ["ts", "level", "event"],
                             "line %d: %r" % (no, line[:300]))
            d = dict((k, v) for k, v, _ in pairs)
            events.append(d["event"])
            if d["event"] == b"message_accepted":
                logged.append(d["queue_id"].decode("ascii").upper())
        self.assertEqual(len(logged), len(set(logged)), "a message_accepted line twice")
        missing = stored - set(logged)
        self.assertFalse(missing, "%d of %d stored messages have no message_accepted line"
                         " (e.g. %s)" % (len(missing), len(stored), sorted(missing)[:5]))
        self.assertEqual(set(logged), stored, "message_accepted lines for unstored messages")
        workers = {qid[:2] for qid in stored}
        self.assertEqual(len(workers), 2, "the load reached one worker only: %s" % workers)
        for want in (b"listening", b"shutdown", b"stopped"):
            self.assertIn(want, events, "no event=%s line" % want.decode())
        return events

    def test_regular_file_without_append(self):
        self.start_on_file()
        self.load()
        dropped = self.dropped()
        self.srv.stop_checked(self)
        self.check_lines(dropped)

    def test_pipe(self):
        self.start_on_pipe()
        self.load()
        dropped = self.dropped()
        self.srv.stop_checked(self)
        self.check_lines(dropped)

    def test_nonblocking_pipe_with_a_stalled_reader(self):
        """The reader stops and the test fills the one-page non-blocking
        pipe; then mail arrives and the server is told to stop, so both the
        workers' writes and the main thread's 'shutdown' line find the pipe
        full (a write(2) gets EAGAIN). When the reader comes back, every line
        must follow."""
        w = self.start_on_pipe(nonblocking=True)
        try:
            time.sleep(0.3)  # the start-up lines are read; the server is quiet
            self.reader.paused.set()
            self.assertTrue(self.reader.idle.wait(5))
            filler = filler_lines(PIPE_SMALL_BYTES)
            self.assertEqual(os.write(w, filler), len(filler), "the pipe was not empty")
        finally:
            os.close(w)
        try:
            # About 430 bytes of lines a message: 150 fit the buffers easily.
            self.load(messages=150)
            dropped = self.dropped()
            self.srv.send_signal(signal.SIGTERM)
            time.sleep(READER_PAUSE_S)
            self.assertTrue(self.srv.running(), "ringmx exited with its stderr stalled")
        finally:
            self.reader.paused.clear()
        status = self.srv.wait_exit(h.STOP_TIMEOUT_S)
        self.srv.check_stderr(self)
        self.assertEqual(status, 0, "exit status after SIGTERM")
        events = self.check_lines(dropped)
        self.assertEqual(events.count(b"test_filler"), filler.count(b"\n"))

if __name__ == "__main__":
    unittest.main()
