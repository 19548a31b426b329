"""PROXY protocol headers (versions 1 and 2) as a load balancer writes them,
and a client that sends one with its first SMTP bytes in a single write,
for the end-to-end tests of the PROXY protocol and of HAProxy in front."""

import ipaddress
import re
import socket
import struct
import time
import urllib.request

import ringmx_harness as h

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst="127.0.0.1", sport=40000, dport=25):
    family = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (family, src, dst, sport, dport)).encode()


def v2(src, dst=None, sport=40000, dport=25, local=False, tlvs=b""):
    """A v2 header: PROXY (TCP over the source's family) or LOCAL."""
    if local:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    a = ipaddress.ip_address(src)
    if a.version == 4:
        b = ipaddress.ip_address(dst or "127.0.0.1")
        block = a.packed + b.packed + struct.pack("!HH", sport, dport)
        fam = 0x11
    else:
        b = ipaddress.ip_address(dst or "::1")
        block = a.packed + b.packed + struct.pack("!HH", sport, dport)
        fam = 0x21
    block += tlvs
    return V2_SIGNATURE + bytes([0x21, fam]) + struct.pack("!H", len(block)) + block


def connect(port, host=h.LOOPBACK4, source=None, first=b"", timeout=h.SOCKET_TIMEOUT_S):
    """An h.SmtpConn that has written first (a header and whatever follows
    it) in one write, before reading anything; source binds the client's
    own address (127.0.0.2, ...)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect((host, port))
        if first:
            s.sendall(first)
    except BaseException:
        s.close()
        raise
    c = h.SmtpConn.__new__(h.SmtpConn)
    c.sock = s
    c.buf = b""
    c.sent = first
    c.banner = None
    return c


def metric(mport, name):
    """The value of one sample (name with its labels) of /metrics, 0 if absent."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rpartition(" ")[2])
    return 0.0


def log_lines(srv, since=0, event=None):
    """The server's log lines (stderr) from byte offset since, optionally of
    one event."""
    text = srv.stderr_bytes()[since:].decode("latin-1")
    lines = text.splitlines()
    if event is not None:
        lines = [ln for ln in lines if re.search(r"\bevent=%s\b" % re.escape(event), ln)]
    return lines


def log_mark(server):
    """Where the server's log ends now: lines after it are new."""
    return len(server.stderr_bytes())


def wait_log(testcase, server, since, pattern, timeout=10.0):
    """The first log line after byte since that matches pattern; fails
    testcase when none comes within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ln in log_lines(server, since):
            if re.search(pattern, ln):
                return ln
        time.sleep(0.05)
    testcase.fail("no log line matching %r; log since:\n%s"
                  % (pattern, "\n".join(log_lines(server, since))[-3000:]))
