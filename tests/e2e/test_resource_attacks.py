#!/usr/bin/env python3
"""Attacks on the gateway's resources, against the real binary:

- bodies held open past max_inflight_data_bytes: the bound holds per byte
  (the gauge never passes it, the process does not grow with the attack),
  the transactions past it end with 451 4.3.1, the others are stored;
- slow clients: a command line or a body trickled one byte at a time cannot
  hold its slot past its timeout (a command must arrive whole within it; a
  body moves its deadline by 1/min_data_rate s per byte), so ordinary
  clients are still served;
- idle connections to the metrics endpoint cannot take SMTP's slots.
"""

import os
import re
import select
import socket
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

# The sanitizer build keeps freed memory in a quarantine (256 MiB by
# default), which would hide whether the server gave body memory back.
os.environ["ASAN_OPTIONS"] = ":".join(
    filter(None, [os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=4"]))

MiB = 1 << 20


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return r.read().decode()


_MISSING = object()


def metric(text, name, default=_MISSING):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    if m is None:
        if default is not _MISSING:
            return default
        raise AssertionError("metric %s missing" % name)
    return float(m.group(1))


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


class ResourceAttackTest(unittest.TestCase):

    def start(self, settings, workers=1):
        self.mport = h.free_port()
        srv = h.Server(settings=[("metrics_listen", "127.0.0.1:%d" % self.mport)] +
                       list(settings), workers=workers)
        self.addCleanup(srv.cleanup)
        srv.start()
        return srv

    def open_body(self, srv, i):
        """A connection that has reached 354."""
        c = srv.conn(timeout=60)
        h.assert_reply(self, c.cmd("EHLO attacker%d.example" % i), 250)
        h.assert_reply(self, c.cmd("MAIL FROM:<a%d@client.example>" % i), 250)
        h.assert_reply(self, c.cmd("RCPT TO:<user@example.com>"), 250)
        h.assert_reply(self, c.cmd("DATA"), 354)
        return c

    def test_inflight_bound_holds_per_byte(self):
        bound = 8 * MiB
        clients, per_client = 16, 6 * MiB  # 96 MiB held open against an 8 MiB bound
        srv = self.start([("max_inflight_data_bytes", "8M"), ("max_message_size", "7M"),
                          ("segment_size", "8M")])
        with srv.conn() as c:  # warm the allocator and the store once
            h.send_message(self, c, b"Subject: warm-up\r\n\r\nhello\r\n", helo="warm.example")
        rss_before = rss_bytes(srv.proc.pid)
        conns = [self.open_body(srv, i) for i in range(clients)]
        line = b"x" * 1022 + b"\r\n"
        chunk = line * 256  # 256 KiB
        errors = []

        def pour(c):
            try:
                for _ in range(per_client // len(chunk)):
                    c.sock.sendall(chunk)
            except OSError as e:
                errors.append(e)

        threads = [threading.Thread(target=pour, args=(c,), daemon=True) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(errors, [])
        # Everything sent has been read by the server once its metrics show
        # the received bytes settle; give it a bounded moment.
        peak_rss = 0
        gauges = []
        for _ in range(20):
            gauges.append(metric(scrape(self.mport), "ringmx_inflight_data_bytes", None))
            peak_rss = max(peak_rss, rss_bytes(srv.proc.pid))
            time.sleep(0.1)
        grown = peak_rss - rss_before
        print("inflight attack: %d MiB held open against an %d MiB bound: gauge peak %s MiB, "
              "RSS grew %.1f MiB" % (clients * per_client // MiB, bound // MiB,
                                     "%.1f" % (max(gauges) / MiB) if None not in gauges else "?",
                                     grown / MiB), file=sys.stderr)
        # The bodies may hold the bound, the allocator a bound's worth of
        # freed pages, and the receive buffer ring (16 MiB, touched page by
        # page as it is used) becomes resident; without the bound the server
        # grows with the attack (96 MiB and more).
        ring_bytes = 1024 * 16384
        self.assertLess(grown, 2 * bound + ring_bytes + 8 * MiB,
                        "the server grew with the attack")
        self.assertNotIn(None, gauges, "no ringmx_inflight_data_bytes gauge")
        self.assertLessEqual(max(gauges), bound)

        codes = []
        for c in conns:
            r = c.cmd(".")
            codes.append((r.code, r.enhanced))
            c.close()
        accepted = codes.count((250, "2.0.0"))
        refused = codes.count((451, "4.3.1"))
        self.assertEqual(accepted + refused, clients, codes)
        self.assertGreater(refused, 0, codes)
        self.assertLessEqual(accepted, bound // per_client, codes)
        text = scrape(self.mport)
        self.assertEqual(metric(text, "ringmx_inflight_data_refused_total"), refused)
        self.assertEqual(metric(text, "ringmx_inflight_data_bytes"), 0)
        self.assertEqual(len(srv.ls_ids()), 1 + accepted)
        # the bound is free again: once the worker's next overload check has
        # seen the bodies go (the attack held them above the in-flight
        # watermark, which puts new transactions off with 452 4.3.1), a
        # message goes through
        deadline = time.monotonic() + 5
        while metric(scrape(self.mport), "ringmx_overload_state") != 0:
            self.assertLess(time.monotonic(), deadline, "still overloaded after the attack")
            time.sleep(0.05)
        with srv.conn() as c:
            h.send_message(self, c, b"Subject: after\r\n\r\nstill serving\r\n",
                           helo="after.example")
        srv.stop_checked(self)

    def trickle(self, c, stop, every_s, data=b"N"):
        """Sends one byte every every_s until stop is set or the server closes."""
        while not stop.is_set():
            try:
                c.sock.sendall(data)
            except OSError:
                return
            stop.wait(every_s)

    def test_slow_clients_cannot_hold_slots(self):
        slots = 30
        srv = self.start([("max_connections", str(slots)), ("idle_timeout", "3s"),
                          ("command_timeout", "3s"), ("data_timeout", "3s")], workers=2)
        stop = threading.Event()
        self.addCleanup(stop.set)
        slow = []
        # Most slots: a command line that never ends, one byte a second.
        for _ in range(slots - 2):
            c = srv.conn(timeout=30)
            slow.append(c)
        # Two in a body, one byte every half second (2 ms of credit each at
        # the default min_data_rate of 500 bytes/s).
        for i in range(2):
            slow.append(self.open_body(srv, i))
        threads = [threading.Thread(target=self.trickle, args=(c, stop, 1.0 if k < slots - 2
                                                                else 0.5), daemon=True)
                   for k, c in enumerate(slow)]
        started = time.monotonic()
        for t in threads:
            t.start()
        # Every slow client is cut with 421 4.4.2 once its timeout passes,
        # however many bytes it trickled meanwhile.
        for c in slow:
            r = None
            try:
                c.settimeout(max(1.0, started + 15 - time.monotonic()))
                r = c.reply()
            except (h.Closed, OSError) as e:
                self.fail("slow client got no 421 within 15 s (%s)" % e)
            self.assertEqual((r.code, r.enhanced), (421, "4.4.2"), r.text)
            self.assertTrue(c.is_closed(), "no close after the timeout reply")
        cut_s = time.monotonic() - started
        # The attackers do not close: after the 421 the server reads and drops
        # their input for the lingering close (2 s), then frees the slot.
        time.sleep(2.5)
        # Ordinary clients are served now: every one of them.
        served = 0
        for i in range(slots):
            with srv.conn() as c:
                h.send_message(self, c, b"Subject: ordinary %d\r\n\r\nhello\r\n" % i,
                               helo="ordinary%d.example" % i)
                served += 1
        stop.set()
        text = scrape(self.mport)
        self.assertGreaterEqual(metric(text, "ringmx_smtp_timeouts_total"), len(slow))
        print("slow clients: %d trickling clients all cut within %.1f s (timeouts 3 s); "
              "%d of %d ordinary clients served" % (len(slow), cut_s, served, slots),
              file=sys.stderr)
        self.assertLess(cut_s, 8.0)
        for c in slow:
            c.close()
        srv.stop_checked(self)

    def test_metrics_clients_cannot_take_smtp_slots(self):
        srv = self.start([("max_connections", "10")], workers=1)
        idle = []
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", self.mport), timeout=5)
            idle.append(s)
        self.addCleanup(lambda: [s.close() for s in idle])
        # SMTP still has all of its slots.
        conns = []
        for i in range(10):
            c = srv.conn()
            self.assertEqual(c.banner.code, 220, c.banner.text)
            conns.append(c)
        for c in conns:
            h.assert_reply(self, c.cmd("QUIT"), 221)
            c.close()
        # Past the metrics pool (32 per worker), connections are closed at
        # once; the pool's own keep theirs (their deadline is 10 s).
        readable, _, _ = select.select(idle, [], [], 1.0)
        closed = 0
        for s in readable:
            try:
                if s.recv(1) == b"":
                    closed += 1
            except OSError:
                closed += 1
        self.assertEqual(closed, 100 - 32)
        for s in idle:
            s.close()
        text = None
        deadline = time.monotonic() + 15
        while text is None and time.monotonic() < deadline:
            try:
                text = scrape(self.mport)
            except OSError:
                time.sleep(0.2)
        self.assertIsNotNone(text, "no scrape after the idle clients left")
        self.assertGreaterEqual(metric(text, "ringmx_http_connections_rejected_total"), 68)
        self.assertEqual(metric(text, 'ringmx_connections_rejected_total{reason="limit"}'), 0)
        srv.stop_checked(self)


if __name__ == "__main__":
    unittest.main()
