#!/usr/bin/env python3
"""Certificates reload on SIGHUP without a restart (certificates made now
with openssl req -x509):

- a renewed certificate (new key, same files) is served to new connections,
  while a TLS session opened before the reload keeps working and sends mail;
- a broken certificate file, and then a key that does not match, are each
  refused with event=tls_cert_kept: new connections still get the renewed
  certificate.
"""

import os
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402


def make_cert(d, name, days):
    cp = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", name + ".key", "-out",
         name + ".crt", "-days", str(days), "-subj", "/CN=" + h.HOSTNAME],
        cwd=d, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    if cp.returncode != 0:
        raise h.StartError("openssl req failed: %s" % cp.stderr.decode("latin-1"))
    return os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")


def install(src, dst):
    """Replaces dst with a copy of src in one rename, as a renewal tool does."""
    shutil.copyfile(src, dst + ".new")
    os.replace(dst + ".new", dst)


def tls_session(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = smtplib.SMTP(h.LOOPBACK4, port, timeout=15)
    s.ehlo("reload.client.example")
    code, _ = s.starttls(context=ctx)
    if code != 220:
        raise AssertionError("STARTTLS answered %d" % code)
    s.ehlo("reload.client.example")
    return s


def served_cert(port):
    s = tls_session(port)
    try:
        return s.sock.getpeercert(binary_form=True)
    finally:
        s.quit()


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class TlsReloadTest(unittest.TestCase):
    def setUp(self):
        h.require_program("openssl")
        self.d = tempfile.mkdtemp(prefix="ringmx-tls-reload-")
        self.old = make_cert(self.d, "old", 10)
        self.new = make_cert(self.d, "new", 90)
        self.crt = os.path.join(self.d, "live.crt")
        self.key = os.path.join(self.d, "live.key")
        install(self.old[0], self.crt)
        install(self.old[1], self.key)
        self.server = h.Server(settings=[("tls_cert", self.crt), ("tls_key", self.key)],
                               workers=2)
        self.server.start()

    def tearDown(self):
        self.server.cleanup()
        shutil.rmtree(self.d, ignore_errors=True)

    def reload(self, needle):
        """SIGHUP, then a bounded wait for one more log line with needle."""
        before = self.server.stderr_text().count(needle)
        self.server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.server.stderr_text().count(needle) > before:
                return
            time.sleep(0.05)
        self.fail("no %r after SIGHUP; stderr:\n%s" % (needle, self.server.stderr_text()[-3000:]))

    def test_renewal_and_broken_files(self):
        port = self.server.port
        self.assertEqual(served_cert(port), der_of(self.old[0]))
        held = tls_session(port)  # open across every reload below

        install(self.new[0], self.crt)
        install(self.new[1], self.key)
        self.reload("event=reload ")
        time.sleep(0.2)  # the workers take the new snapshot on their next turn
        self.assertEqual(served_cert(port), der_of(self.new[0]))
        self.assertEqual(held.noop()[0], 250)
        self.assertEqual(held.sendmail("a@client.example", ["postmaster@" + h.DOMAIN],
                                       "Subject: held\r\n\r\nsent after a reload\r\n"), {})

        # A broken certificate file: the renewed pair stays in service.
        with open(self.crt + ".new", "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        os.replace(self.crt + ".new", self.crt)
        self.reload("event=tls_cert_kept")
        self.assertEqual(served_cert(port), der_of(self.new[0]))

        # The old certificate with the new key: they do not match.
        install(self.old[0], self.crt)
        self.reload("event=tls_cert_kept")
        self.assertIn("does not match", self.server.stderr_text())
        self.assertEqual(served_cert(port), der_of(self.new[0]))

        self.assertEqual(held.noop()[0], 250)
        held.quit()
        self.server.stop_checked(self)


if __name__ == "__main__":
    unittest.main()
