#!/usr/bin/env python3
"""scrape_overhead.py - does watching ringmx cost throughput?

Runs Postfix's smtp-source against one ringmx, alternating rounds with and
without a scraper that GETs /metrics every 100 ms, and prints the median
messages/s of each and their ratio. Side by side in one run, so a shared,
noisy machine moves both alike.

  bench/scrape_overhead.py RINGMX_BINARY [--messages N] [--rounds R]
                           [--sessions S] [--size BYTES] [--interval-ms MS]

Needs the postfix package (smtp-source). ringmx runs on loopback with
fsync = always, its store in a temporary directory removed at the end.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def scrape_once(port):
    """One GET /metrics; returns the body length (0 on failure)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        n = 0
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            n += len(chunk)
        s.close()
        return n
    except OSError:
        return 0


class Scraper:
    """GET /metrics every interval until stopped; counts scrapes."""

    def __init__(self, port, interval_s):
        self.port, self.interval_s = port, interval_s
        self.stop = threading.Event()
        self.count = self.failed = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        next_t = time.monotonic()
        while not self.stop.is_set():
            if scrape_once(self.port):
                self.count += 1
            else:
                self.failed += 1
            next_t += self.interval_s
            self.stop.wait(max(0.0, next_t - time.monotonic()))


def smtp_source(port, messages, sessions, size):
    """Runs smtp-source; returns messages/s (wall clock)."""
    exe = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    t0 = time.monotonic()
    subprocess.run([exe, "-s", str(sessions), "-m", str(messages), "-l", str(size), "-d",
                    "-f", "bench@client.example", "-t", "user@localhost",
                    "127.0.0.1:%d" % port],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return messages / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ringmx")
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--interval-ms", type=int, default=100)
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="ringmx-scrape-")
    port, mport = free_port(), free_port()
    conf = os.path.join(tmp, "ringmx.conf")
    with open(conf, "w") as f:
        f.write("listen = 127.0.0.1:%d\nmetrics_listen = 127.0.0.1:%d\n"
                "data_dir = %s\nfsync = always\naccept_domains = localhost\n"
                "store_max_bytes = 16G\nlog_level = warn\n"
                % (port, mport, os.path.join(tmp, "data")))
    proc = subprocess.Popen([a.ringmx, "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(tmp, "stderr.log"), "wb"))
    try:
        if not wait_port(port, 60):
            sys.exit("ringmx did not start; see %s/stderr.log" % tmp)
        plain, scraped, scrapes = [], [], 0
        for r in range(a.rounds):
            for watched in ((False, True) if r % 2 == 0 else (True, False)):
                sc = Scraper(mport, a.interval_ms / 1000.0) if watched else None
                if sc:
                    sc.thread.start()
                rate = smtp_source(port, a.messages, a.sessions, a.size)
                if sc:
                    sc.stop.set()
                    sc.thread.join()
                    scrapes += sc.count
                    if sc.failed:
                        sys.exit("%d scrapes failed" % sc.failed)
                (scraped if watched else plain).append(rate)
                print("round %d %-12s %8.0f msgs/s" % (r + 1, "scraped" if watched else
                                                      "not scraped", rate), flush=True)
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        mp, ms = statistics.median(plain), statistics.median(scraped)
        print("median not scraped %.0f msgs/s, scraped every %d ms %.0f msgs/s: ratio %.3f "
              "(%d scrapes, %d bytes each, load average %s)"
              % (mp, a.interval_ms, ms, ms / mp, scrapes, scrape_once(mport), load))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
