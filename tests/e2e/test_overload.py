#!/usr/bin/env python3
"""Overload watermarks, against smtplib, with no upstream so the store only
grows (the store measure counts the segments a shard holds):

- stress (overload_store_soft): a transaction already past DATA is never
  cut, new transactions get 452 4.3.1 at MAIL, new connections are still
  greeted; logged once (event=overload state=stress) and visible in
  ringmx_overload_state and ringmx_overload_reason{reason="store"};
- refuse (overload_store_hard): new connections get 421 4.3.2 at once and
  are counted in ringmx_connections_rejected_total{reason="overload"};
- nothing acknowledged is lost: every 250 is in the store afterwards.
"""

import os
import smtplib
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

BODY_LINES = 1300  # about 100 KB a message: 4M segments fill in about 40


def body(token):
    return "Subject: %s\r\n\r\n" % token + ("y" * 78 + "\r\n") * BODY_LINES


class OverloadTest(unittest.TestCase):
    def metrics(self, port):
        return h.scrape_metrics(port)

    def metric(self, text, series):
        value = h.metric_value(text, series)
        self.assertIsNotNone(value, "no %s in /metrics" % series)
        return value

    def run_to(self, server, port, state, limit=600):
        """Sends messages on one session until MAIL is refused; returns
        (acknowledged ids, the refusal)."""
        acked = []
        with smtplib.SMTP(h.LOOPBACK4, server.port, timeout=30) as s:
            s.ehlo("load.example")
            for i in range(limit):
                code, msg = s.mail("a@client.example")
                if code != 250:
                    return acked, (code, msg)
                self.assertEqual(s.rcpt("user@" + h.DOMAIN)[0], 250)
                code, msg = s.data(body("ov%d" % i))
                # A transaction past DATA is never cut: its end gets 250.
                self.assertEqual(code, 250, msg)
                acked.append(msg.decode().rsplit(" ", 1)[-1])
                time.sleep(0.01)
        self.fail("no refusal in %d messages (state %s expected)" % (limit, state))

    def test_stress_then_refuse(self):
        metrics_port = h.free_port()
        server = h.Server(settings=[
            ("metrics_listen", "%s:%d" % (h.LOOPBACK4, metrics_port)),
            ("store_max_bytes", "64M"), ("segment_size", "4M"),
            ("overload_store_soft", "25"), ("overload_store_hard", "40"),
        ], workers=1)
        try:
            server.start()
            acked, refusal = self.run_to(server, metrics_port, "stress")
            self.assertEqual(refusal[0], 452, refusal)
            self.assertTrue(refusal[1].startswith(b"4.3.1"), refusal)
            self.assertIn("event=overload worker=0 state=stress was=normal reasons=store",
                          server.stderr_text())
            text = self.metrics(metrics_port)
            self.assertEqual(self.metric(text, "ringmx_overload_state"), 1)
            self.assertEqual(self.metric(text, 'ringmx_overload_reason{reason="store"}'), 1)
            # Under stress a new client is still greeted, and refused at MAIL.
            with h.SmtpConn(server.port) as c:
                h.assert_reply(self, c.cmd("EHLO late.example"), 250)
                h.assert_reply(self, c.cmd("MAIL FROM:<b@client.example>"), 452, "4.3.1")
            # The hard mark: restarted on the same store with its marks
            # below what the store now holds, new connections are refused.
            server.stop_checked(self)
            server2 = h.Server(settings=[
                ("metrics_listen", "%s:%d" % (h.LOOPBACK4, metrics_port)),
                ("data_dir", server.data_dir),
                ("store_max_bytes", "64M"), ("segment_size", "4M"),
                ("overload_store_soft", "5"), ("overload_store_hard", "10"),
            ], workers=1)
            server2.data_dir = server.data_dir  # for ringmx-store ls
            try:
                server2.start(wait=False)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and "state=refuse" not in server2.stderr_text():
                    time.sleep(0.1)
                self.assertIn("state=refuse", server2.stderr_text())
                with h.SmtpConn(server2.port, read_banner=False) as c:
                    r = c.reply()
                    self.assertEqual((r.code, r.enhanced), (421, "4.3.2"), r.text)
                text = self.metrics(metrics_port)
                self.assertEqual(self.metric(text, "ringmx_overload_state"), 2)
                self.assertGreaterEqual(
                    self.metric(text, 'ringmx_connections_rejected_total{reason="overload"}'), 1)
                # Nothing acknowledged was lost.
                held = set(server2.ls_ids())
                self.assertTrue(set(acked) <= held, set(acked) - held)
                server2.stop_checked(self)
            finally:
                server2.cleanup()
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
