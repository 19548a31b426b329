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
"""

import json
import os
import re
import sys
import unittest

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


if __name__ == "__main__":
    unittest.main()
