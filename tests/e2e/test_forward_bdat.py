#!/usr/bin/env python3
"""Forwarding by BDAT (RFC 3030 CHUNKING) and relaying BINARYMIME.

- Into a real Postfix smtpd (it offers CHUNKING, not BINARYMIME): with
  upstream_chunking = yes (the default) messages go by BDAT, seen in
  smtpd's own per-session command counts ("bdat=N" on its disconnect
  lines), and arrive byte-exact: a small body, a large one sent run by run
  from the record (lines that begin with "." unstuffed on the way), and one
  with many such lines, which goes by DATA. With upstream_chunking = no
  every message goes by DATA. A recipient Postfix refuses while the others
  are accepted, and a transaction whose only recipient is refused (the BDAT
  is on the wire already; Postfix reads and refuses it), end as they do by
  DATA: delivered once, and a DSN for the refused one.
- BINARYMIME: a body with NUL bytes, bare CR, bare LF, lines that begin
  with "." and a CRLF "." CRLF inside, sent to the gateway by BDAT, relayed
  to a second ringmx (which offers BINARYMIME and CHUNKING) and read back
  byte for byte from its store, small and large; relayed to smtp-sink
  (neither offered) or with upstream_chunking = no, it is bounced 554 5.6.3
  with a DSN that says why.
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

SENDER = "sender@client.example"
GOOD = ["good1@" + h.DOMAIN, "good2@" + h.DOMAIN]
BAD = "nosuchuser@" + h.DOMAIN
HELO = "orig-client.helo.example"
DELIVERY_TIMEOUT_S = 60.0


def postfix_counts(log):
    """Sum of smtpd's per-session command counts (commands sent, accepted or
    not) over its disconnect lines for sessions from 127.0.0.1 (the
    gateway), e.g. {"bdat": 3, "data": 1}."""
    out = {}
    for line in log.splitlines():
        m = re.search(r"disconnect from \S+\[127\.0\.0\.1\](.*)$", line)
        if not m:
            continue
        # "bdat=1/2": 1 of 2 succeeded; count them all
        for k, ok, total in re.findall(r"\b([a-z]+)=(\d+)(?:/(\d+))?", m.group(1)):
            out[k] = out.get(k, 0) + int(total or ok)
    return out


def bdat_send(testcase, c, body, sender, rcpts, body_param=" BODY=BINARYMIME", pieces=3):
    """One transaction by BDAT (in several chunks) on an open SmtpConn after
    EHLO; returns the queue id."""
    h.assert_reply(testcase, c.cmd("MAIL FROM:<%s>%s" % (sender, body_param)), 250, "2.1.0",
                   sent=c.sent)
    for r in rcpts:
        h.assert_reply(testcase, c.cmd("RCPT TO:<%s>" % r), 250, "2.1.5", sent=c.sent)
    step = max(1, len(body) // pieces)
    cuts = list(range(0, len(body), step))[1:pieces] + [len(body)]
    at = 0
    for i, end in enumerate(cuts):
        last = i == len(cuts) - 1
        c.send(b"BDAT %d%s\r\n" % (end - at, b" LAST" if last else b"") + body[at:end])
        reply = c.reply()
        if last:
            return h.queued_id(testcase, reply, b"BDAT LAST")
        h.assert_reply(testcase, reply, 250, "2.0.0", sent=c.sent[-200:])
        at = end
    raise AssertionError("no LAST chunk")


def text_head(token, to=GOOD[0]):
    """Complete headers, so that Postfix adds none of its own."""
    return (b"From: <" + SENDER.encode() + b">\r\nTo: <" + to.encode()
            + b">\r\nDate: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <"
            + token.encode() + b"@client.example>\r\nSubject: " + token.encode() + b"\r\n")


def binary_body(token, size):
    """A BINARYMIME body with every awkward byte sequence, about size bytes."""
    head = (b"Subject: " + token.encode() + b"\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n")
    tricky = (b"\x00NUL\x00\r\n.leading dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n"
              b"bare LF\n.dot after bare LF\nbare CR\r.dot after bare CR\r"
              b"\r\n.\r\n\r\n..\r\n" + bytes(range(256)))
    out = head + tricky
    while len(out) < size:
        out += tricky
    return out + b"\r\n.end without a final CRLF"


class ForwardBdatIntoPostfix(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        up.require_root()
        cls.relay = up.PostfixRelay(domains=[h.DOMAIN, "client.example"],
                                    mailboxes=GOOD + [BAD, SENDER], reject=[BAD])
        cls.relay.start()

    @classmethod
    def tearDownClass(cls):
        cls.relay.cleanup()

    def gateway(self, chunking):
        extra = [("upstream_helo", "gw.e2e.test")]
        if chunking is not None:
            extra.append(("upstream_chunking", chunking))
        srv = h.Server(settings=up.forward_settings([self.relay.port], extra=extra))
        srv.start()
        return srv

    def wait_messages(self, srv, address, token, count=1):
        key = token.encode()

        def find():
            got = [m for _, m in self.relay.messages(address) if key in m]
            return got if len(got) >= count else None

        got = up.wait_for(find, DELIVERY_TIMEOUT_S, 0.2)
        if not got:
            self.fail("no message with %s in %s's Maildir within %.0fs;\ngateway log tail:\n"
                      "%s\nPostfix log tail:\n%s"
                      % (token, address, DELIVERY_TIMEOUT_S, srv.stderr_text()[-3000:],
                         self.relay.log_text()[-3000:]))
        return got

    def check_arrived(self, srv, address, token, body):
        data, = self.wait_messages(srv, address, token)
        crlf = data.replace(b"\n", b"\r\n")
        start = crlf.find(b"Received: from " + HELO.encode())
        self.assertGreaterEqual(start, 0, "the gateway's Received: is missing: %r" % data[:800])
        _, tail = h.split_received(crlf[start:])
        self.assertEqual(tail, body, "Postfix stored a different message for %s" % token)

    def bodies(self, tag):
        small_tok = h.unique_token(tag + "small")
        large_tok = h.unique_token(tag + "large")
        dots_tok = h.unique_token(tag + "dots")
        small = (text_head(small_tok) + b"\r\n.leading dot\r\n..two\r\n"
                 b"middle\r\n.\r\nlast line\r\n")
        # past out's room: sent from the record, one run per line with a dot
        large = text_head(large_tok) + b"\r\n" + b"".join(
            (b".dot line %d\r\n" % i if i % 500 == 0 else b"line %d %s\r\n" % (i, b"x" * 60))
            for i in range(3000))
        # more than 32 lines that begin with a dot: DATA
        dots = text_head(dots_tok) + b"\r\n" + b"".join(
            b".%d\r\n" % i for i in range(40))
        return [(small_tok, small), (large_tok, large), (dots_tok, dots)]

    def run_gateway(self, chunking, tag):
        srv = self.gateway(chunking)
        try:
            msgs = self.bodies(tag)
            with up.SourceConn(srv.port, "127.0.0.2") as c:
                for i, (tok, body) in enumerate(msgs):
                    h.send_message(self, c, body, sender=SENDER, rcpts=GOOD[:1],
                                   helo=HELO if i == 0 else None)
                c.cmd("QUIT")
            for tok, body in msgs:
                self.check_arrived(srv, GOOD[0], tok, body)
        finally:
            # QUIT closes the gateway's sessions, so smtpd logs their counts
            h.stop_and_check(srv)

    def wait_counts(self, before, want):
        def got():
            c = postfix_counts(self.relay.log_text())
            d = {k: c.get(k, 0) - before.get(k, 0) for k in ("bdat", "data")}
            return d if d == want else None

        self.assertTrue(up.wait_for(got, 10.0, 0.2),
                        "smtpd's command counts for the gateway's sessions: %r, want %r "
                        "more than %r;\nPostfix log tail:\n%s"
                        % (postfix_counts(self.relay.log_text()), want, before,
                           self.relay.log_text()[-3000:]))

    def test_chunking_default_uses_bdat(self):
        before = postfix_counts(self.relay.log_text())
        self.run_gateway(None, "bdat")
        # two by BDAT (the small and the large one), the one with 40 dot
        # lines by DATA
        self.wait_counts(before, {"bdat": 2, "data": 1})

    def test_chunking_off_uses_data(self):
        before = postfix_counts(self.relay.log_text())
        self.run_gateway("no", "data")
        self.wait_counts(before, {"bdat": 0, "data": 3})

    def test_refused_recipients_by_bdat(self):
        """One recipient refused among accepted ones, and one transaction
        whose only recipient is refused: BDAT went out behind the RCPT in
        both; the accepted ones get one copy, the sender one DSN each."""
        before = postfix_counts(self.relay.log_text())
        srv = self.gateway(None)
        try:
            tok1 = h.unique_token("bdatmix")
            tok2 = h.unique_token("bdatnone")
            b1 = text_head(tok1) + b"\r\ntwo good, one bad\r\n"
            b2 = text_head(tok2, BAD) + b"\r\nonly bad\r\n"
            with up.SourceConn(srv.port, "127.0.0.2") as c:
                q1 = h.send_message(self, c, b1, sender=SENDER, rcpts=[GOOD[0], BAD, GOOD[1]],
                                    helo=HELO)
                q2 = h.send_message(self, c, b2, sender=SENDER, rcpts=[BAD])
                c.cmd("QUIT")
            self.check_arrived(srv, GOOD[0], tok1, b1)
            self.check_arrived(srv, GOOD[1], tok1, b1)
            self.wait_messages(srv, SENDER, tok1)
            self.wait_messages(srv, SENDER, tok2)
            up.wait_for(lambda: False, 1.0)  # a second copy would follow closely
            for addr, tok in ((GOOD[0], tok1), (GOOD[1], tok1), (SENDER, tok1), (SENDER, tok2)):
                n = len([m for _, m in self.relay.messages(addr) if tok.encode() in m])
                self.assertEqual(n, 1, "%s got %d messages with %s" % (addr, n, tok))
            self.assertEqual(self.relay.messages(BAD), [])
            results = {}
            for e in up.log_events(srv, "delivery"):
                results.setdefault(e.get("id", "").upper(), {})[e.get("rcpt")] = \
                    (e.get("result"), e.get("reply"))
            self.assertEqual({k: v[0] for k, v in results[q1].items()},
                             {GOOD[0]: "delivered", GOOD[1]: "delivered", BAD: "bounced"})
            self.assertEqual(results[q2], {BAD: ("bounced", "550 5.1.1")}, results[q2])
        finally:
            h.stop_and_check(srv)
        # all by BDAT: the two messages (the second one refused by Postfix
        # after the RCPT's 550) and the two DSNs
        self.wait_counts(before, {"bdat": 4, "data": 0})


class RelayBinaryMime(unittest.TestCase):

    def test_binarymime_to_ringmx(self):
        """Through one ringmx to another, by BDAT with BODY=BINARYMIME, back
        byte for byte from the second one's store."""
        inner = h.Server()
        outer = None
        try:
            inner.start()
            outer = h.Server(settings=up.forward_settings([inner.port]))
            outer.start()
            bodies = [binary_body(h.unique_token("binsmall"), 600),
                      binary_body(h.unique_token("binlarge"), 200000)]
            with outer.conn() as c:
                h.assert_reply(self, c.cmd("EHLO " + HELO), 250, sent=c.sent)
                qids = [bdat_send(self, c, b, SENDER, [GOOD[0]]) for b in bodies]
                c.cmd("QUIT")

            def delivered():
                done = {e.get("id", "").upper() for e in up.log_events(outer, "delivery")
                        if e.get("result") == "delivered"}
                return all(q in done for q in qids)

            self.assertTrue(up.wait_for(delivered, DELIVERY_TIMEOUT_S, 0.2),
                            "not delivered; gateway log tail:\n%s" % outer.stderr_text()[-3000:])
            stored = {}
            for qid in up.wait_for(lambda: len(inner.ls_ids()) == 2 and inner.ls_ids(), 10.0):
                received, rest = h.split_received(inner.show_body(qid))
                outer_received, original = h.split_received(rest)
                self.assertIn("(ringmx)", outer_received)
                stored[qid] = original
            for b in bodies:
                self.assertIn(b, stored.values(),
                              "the second ringmx stored a different body (%d bytes sent)"
                              % len(b))
            env = [inner.show(q).split(b"\n\n", 1)[0] for q in stored]
            self.assertTrue(all(b"\nBody-Type: BINARYMIME\n" in e for e in env),
                            "the relayed message lost BODY=BINARYMIME: %r" % env)
        finally:
            if outer is not None:
                h.stop_and_check(outer)
            h.stop_and_check(inner)

    def bounced_with(self, settings_extra, upstream_port, sink, why):
        srv = h.Server(settings=up.forward_settings([upstream_port], extra=settings_extra))
        try:
            srv.start()
            token = h.unique_token("binbounce")
            body = binary_body(token, 300)
            with srv.conn() as c:
                h.assert_reply(self, c.cmd("EHLO " + HELO), 250, sent=c.sent)
                qid = bdat_send(self, c, body, SENDER, [GOOD[0]])
                c.cmd("QUIT")

            def bounced():
                return [e for e in up.log_events(srv, "delivery")
                        if e.get("id", "").upper() == qid and e.get("result") == "bounced"]

            got = up.wait_for(bounced, DELIVERY_TIMEOUT_S, 0.2)
            self.assertTrue(got, "no bounce; log tail:\n%s" % srv.stderr_text()[-3000:])
            self.assertEqual(got[0].get("reply"), "554 5.6.3", got)

            def dsn():
                return [d for d in sink.dumps() if d.sender == "" and token.encode()
                        in d.message]

            dsns = up.wait_for(dsn, DELIVERY_TIMEOUT_S, 0.2)
            self.assertTrue(dsns, "no DSN at the sink; log tail:\n%s"
                            % srv.stderr_text()[-3000:])
            text = dsns[0].message.replace(b"\r\n ", b" ")
            self.assertIn(b"554 5.6.3 binary content cannot be relayed: " + why, text)
        finally:
            h.stop_and_check(srv)

    def test_binarymime_bounced_without_upstream_support(self):
        up.require_root()
        sink = up.Sink()
        try:
            sink.start()
            self.bounced_with([], sink.port, sink,
                              b"upstream does not offer BINARYMIME and CHUNKING")
        finally:
            sink.cleanup()

    def test_binarymime_bounced_with_chunking_off(self):
        up.require_root()
        sink = up.Sink()
        try:
            sink.start()
            self.bounced_with([("upstream_chunking", "no")], sink.port, sink,
                              b"chunking to upstream is off")
        finally:
            sink.cleanup()


if __name__ == "__main__":
    unittest.main()
