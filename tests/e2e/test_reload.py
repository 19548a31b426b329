#!/usr/bin/env python3
"""SIGHUP reload of a running gateway:

- under load (several smtplib clients sending all along), accept_domains
  gains a domain: after the reload new sessions accept it, a session opened
  before the reload still finishes its mail, and no client saw an error;
- a broken file is refused, every bad line is logged, and the running
  policy stays;
- a key that needs a restart (listen) is named in the log and keeps its
  running value, while the live keys of the same file apply;
- many reloads in a row keep working (old snapshots are freed once no
  session reads them).
"""

import os
import signal
import smtplib
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

NEW_DOMAIN = "reloaded.example"
LOAD_CLIENTS = 3


def rcpt_code(port, rcpt):
    """The reply code to RCPT TO:<rcpt> in a fresh session."""
    with smtplib.SMTP(h.LOOPBACK4, port, timeout=15) as s:
        s.ehlo("reload.client.example")
        s.mail("a@client.example")
        code, _ = s.rcpt(rcpt)
        s.rset()
        return code


class Load:
    """Clients sending messages in a loop until stopped; counts outcomes."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.sent = 0
        self.errors = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(LOAD_CLIENTS)]

    def run(self, i):
        try:
            with smtplib.SMTP(h.LOOPBACK4, self.port, timeout=20) as s:
                s.ehlo("load%d.client.example" % i)
                n = 0
                while not self.stop.is_set():
                    s.sendmail("load@client.example", ["user@" + h.DOMAIN],
                               "Subject: load %d %d\r\n\r\nbody\r\n" % (i, n))
                    n += 1
                    with self.lock:
                        self.sent += 1
        except Exception as e:  # noqa: BLE001 - any failure is reported
            with self.lock:
                self.errors.append(repr(e))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


class Reload(unittest.TestCase):

    def start(self):
        srv = h.Server(workers=2)
        self.addCleanup(srv.cleanup)
        with open(srv.config_path) as f:
            self.base_config = f.read()
        srv.start()
        return srv

    def rewrite(self, srv, extra_lines):
        with open(srv.config_path, "w") as f:
            f.write(self.base_config + "".join(line + "\n" for line in extra_lines))

    def hup(self, srv, expect_applied=True):
        """Sends SIGHUP and waits until the reload is done: applied by
        every worker, or refused."""
        before_ok = len(up.log_events(srv, "reload"))
        before_applied = len(up.log_events(srv, "reload_applied"))
        before_refused = len(up.log_events(srv, "reload_refused"))
        srv.proc.send_signal(signal.SIGHUP)
        if expect_applied:
            ok = up.wait_for(lambda: len(up.log_events(srv, "reload")) > before_ok and
                             len(up.log_events(srv, "reload_applied")) >= before_applied + 2,
                             15.0, 0.05)
        else:
            ok = up.wait_for(lambda: len(up.log_events(srv, "reload_refused")) > before_refused,
                             15.0, 0.05)
        self.assertTrue(ok, "reload did not finish; log tail:\n%s" % srv.stderr_text()[-3000:])

    def test_new_domain_under_load(self):
        srv = self.start()
        self.assertEqual(rcpt_code(srv.port, "user@" + NEW_DOMAIN), 554)
        old = srv.conn()  # a session opened before the reload
        h.assert_reply(self, old.cmd("EHLO old.client.example"), 250)
        with Load(srv.port) as load:
            time.sleep(0.5)
            self.rewrite(srv, ["accept_domains = %s %s" % (h.DOMAIN, NEW_DOMAIN)])
            self.hup(srv)
            self.assertEqual(rcpt_code(srv.port, "user@" + NEW_DOMAIN), 250)
            time.sleep(0.5)
        self.assertEqual(load.errors, [], "a client saw an error during the reload")
        self.assertGreater(load.sent, 0)
        # the old session keeps its policy (the reload changed nothing for it)
        # and finishes normally
        qid = h.send_message(self, old, b"Subject: old session\r\n\r\nstill here\r\n")
        self.assertIn(qid, srv.ls_ids())
        h.assert_reply(self, old.cmd("QUIT"), 221)
        old.close()
        srv.stop_checked(self)

    def test_broken_file_keeps_running_config(self):
        srv = self.start()
        self.rewrite(srv, ["accept_domains = %s %s" % (h.DOMAIN, NEW_DOMAIN)])
        self.hup(srv)
        self.rewrite(srv, ["accept_domains = %s" % h.DOMAIN,
                           "max_recipients = lots",
                           "no_such_key = 1",
                           "this line has no equals sign"])
        self.hup(srv, expect_applied=False)
        failed = up.log_events(srv, "reload_failed")
        self.assertEqual(len(failed), 3, failed)
        self.assertIn("max_recipients", failed[0].get("error", ""))
        self.assertIn("no_such_key", failed[1].get("error", ""))
        self.assertIn("key = value", failed[2].get("error", ""))
        # the domain added by the good reload is still accepted
        self.assertEqual(rcpt_code(srv.port, "user@" + NEW_DOMAIN), 250)
        srv.stop_checked(self)

    def test_restart_only_key_is_reported(self):
        srv = self.start()
        other = h.free_port()
        self.rewrite(srv, ["listen = %s:%d" % (h.LOOPBACK4, other),
                           "accept_domains = %s %s" % (h.DOMAIN, NEW_DOMAIN)])
        self.hup(srv)
        needed = up.log_events(srv, "reload_restart_needed")
        self.assertEqual(len(needed), 1, needed)
        self.assertEqual(needed[0].get("keys"), "listen")
        # still on the old port, with the new domain
        self.assertEqual(rcpt_code(srv.port, "user@" + NEW_DOMAIN), 250)
        self.assertFalse(up.port_accepts(other))
        srv.stop_checked(self)

    def test_many_reloads(self):
        srv = self.start()
        for i in range(12):
            domains = [h.DOMAIN] + (["r%d.example" % i])
            self.rewrite(srv, ["accept_domains = %s" % " ".join(domains),
                               "max_recipients = %d" % (100 + i)])
            self.hup(srv)
            self.assertEqual(rcpt_code(srv.port, "user@r%d.example" % i), 250)
            if i:
                self.assertEqual(rcpt_code(srv.port, "user@r%d.example" % (i - 1)), 554)
        self.assertEqual(up.log_events(srv, "reload_refused"), [])
        srv.stop_checked(self)


if __name__ == "__main__":
    unittest.main()
