#!/usr/bin/env python3
"""testssl.sh against ringmx's TLS: the STARTTLS port (testssl --starttls
smtp) and the smtps port (implicit TLS), each with an ECDSA P-256
certificate made now by openssl. The run covers protocols, cipher
categories, forward secrecy, the server's preferences and defaults, and the
vulnerability checks; its JSON findings are read back and any finding of
severity HIGH or CRITICAL fails the test, printed with its id and text.

Findings about the test certificate itself (self-signed, no trust chain,
no OCSP or CRL, a short life) say nothing about ringmx and are left out by
id, each id below with the reason. testssl runs with --fast and a bound on
each of its connections, and is killed past TESTSSL_TIMEOUT_S; the test
skips (77) only when testssl is missing or cannot run at all here.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402

# Both testssl runs (one per port, side by side) end within this, or are
# killed and the test fails.
TESTSSL_TIMEOUT_S = 170

# Ids of findings that rate the test certificate, not the server: a
# certificate made by `openssl req -x509` a moment ago for a test host name.
CERTIFICATE_FINDING_IDS = {
    # Self-signed: no CA in testssl's stores signed it (CRITICAL).
    "cert_chain_of_trust",
    # Trust is rated from the chain and the name testssl asked for: a test
    # host name no public CA vouches for.
    "cert_trust",
    "cert_commonName_wo_SNI",
    # A test certificate names no CRL distribution point nor OCSP responder
    # (cert_revocation is HIGH for that), so there is nothing to staple.
    "cert_revocation",
    "cert_crlDistributionPoints",
    "cert_ocspURL",
    "OCSP_stapling",
    # Made for a year at most: testssl rates certificates close to expiry.
    "cert_notAfter",
    "cert_expirationStatus",
    "cert_validityPeriod",
}


def testssl_program():
    """testssl.sh's command: Debian installs it as testssl."""
    for name in ("testssl", "testssl.sh"):
        path = shutil.which(name)
        if path:
            return path
    return None


def make_cert(d):
    """An ECDSA P-256 self-signed certificate for the test host name."""
    crt, key = os.path.join(d, "server.crt"), os.path.join(d, "server.key")
    cp = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
         "-days", "365", "-subj", "/CN=" + h.HOSTNAME, "-addext",
         "subjectAltName=DNS:" + h.HOSTNAME],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    if cp.returncode != 0:
        raise h.StartError("openssl req failed: %s" % cp.stderr.decode("latin-1"))
    return crt, key


def start_testssl(program, port, starttls, json_path, work_dir):
    """Starts one testssl run against 127.0.0.1:port. Its sections:
    protocols (-p), cipher categories (-s), forward secrecy (-f), the
    server's preference (-P), its defaults (-S), vulnerabilities (-U). No
    DNS, no contact with anything but the target."""
    args = [program, "--quiet", "--color", "0", "--warnings", "off", "--fast",
            "--nodns", "none", "--ip", h.LOOPBACK4, "--connect-timeout", "10",
            "--openssl-timeout", "10", "--jsonfile", json_path,
            "-p", "-s", "-f", "-P", "-S", "-U"]
    if starttls:
        args += ["--starttls", "smtp"]
    args.append("%s:%d" % (h.HOSTNAME, port))
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=work_dir)


def finish_testssl(proc, deadline):
    """Waits for a run until the monotonic deadline, killing it past that;
    returns (returncode, output)."""
    try:
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return None, out.decode("latin-1")
    return proc.returncode, out.decode("latin-1")


def serious_findings(findings):
    """Findings rated HIGH or CRITICAL that are not about the certificate."""
    return [f for f in findings
            if f.get("severity") in ("HIGH", "CRITICAL")
            and f.get("id") not in CERTIFICATE_FINDING_IDS]


class TestsslTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.require_program("openssl")
        cls.program = testssl_program()
        if cls.program is None:
            print("skip: testssl.sh is not installed (Debian package testssl.sh)")
            sys.exit(77)
        cp = subprocess.run([cls.program, "--version"], stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=60)
        if cp.returncode != 0:
            print("skip: %s --version fails here (exit %d): %s"
                  % (cls.program, cp.returncode, cp.stdout.decode("latin-1")[-500:]))
            sys.exit(77)
        cls.tmp = tempfile.mkdtemp(prefix="ringmx-testssl-")
        crt, key = make_cert(cls.tmp)
        cls.smtps_port = h.free_port()
        cls.server = h.Server(settings=[("tls_cert", crt), ("tls_key", key)], workers=1,
                              extra_lines=["listen = %s:%d smtps"
                                           % (h.LOOPBACK4, cls.smtps_port)])
        cls.server.start()
        # Both ports at once: a run takes most of its time waiting for
        # testssl's own checks, not for ringmx.
        runs = {"starttls": (cls.server.port, True), "smtps": (cls.smtps_port, False)}
        procs = {name: start_testssl(cls.program, port, starttls,
                                     os.path.join(cls.tmp, name + ".json"), cls.tmp)
                 for name, (port, starttls) in runs.items()}
        deadline = time.monotonic() + TESTSSL_TIMEOUT_S
        cls.results = {name: finish_testssl(p, deadline) for name, p in procs.items()}

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        if not os.environ.get("RINGMX_E2E_KEEP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def tearDown(self):
        self.assertTrue(self.server.running(), "ringmx exited:\n%s"
                        % self.server.stderr_text()[-3000:])
        self.server.check_stderr(self)

    def findings(self, name):
        json_path = os.path.join(self.tmp, name + ".json")
        rc, output = self.results[name]
        self.assertIsNotNone(rc, "testssl (%s) still ran after %d s:\n%s"
                             % (name, TESTSSL_TIMEOUT_S, output[-4000:]))
        try:
            with open(json_path) as f:
                findings = json.load(f)
        except (OSError, ValueError) as e:
            self.fail("testssl (%s) wrote no JSON findings (%s), exit %d:\n%s"
                      % (name, e, rc, output[-4000:]))
        ids = {f.get("id") for f in findings}
        # A scan that never got through a handshake rates nothing: the
        # protocols and the cipher it negotiated must be among the findings.
        self.assertIn("TLS1_3", ids, "testssl (%s) tested no protocol:\n%s"
                      % (name, output[-4000:]))
        scan_errors = [f for f in findings if f.get("id") == "scanProblem"]
        self.assertEqual(scan_errors, [], "testssl (%s) could not finish:\n%s"
                         % (name, output[-4000:]))
        serious = serious_findings(findings)
        for f in serious:
            print("%s: %s %s: %s" % (name, f.get("severity"), f.get("id"), f.get("finding")))
        self.assertEqual(serious, [], "testssl (%s) rates these HIGH or CRITICAL:\n%s"
                         % (name, "\n".join("%s %s: %s" % (f.get("severity"), f.get("id"),
                                                            f.get("finding"))
                                            for f in serious)))
        return findings

    def test_starttls_port(self):
        findings = self.findings("starttls")
        by_id = {f.get("id"): f for f in findings}
        # TLS 1.0 and 1.1 are refused (the rule), 1.2 and 1.3 served.
        for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
            self.assertIn("not offered", by_id.get(old, {}).get("finding", ""),
                          "%s: %s" % (old, by_id.get(old)))
        self.assertIn("offered", by_id["TLS1_3"]["finding"])
        self.assert_aead_only(by_id)

    def assert_aead_only(self, by_id):
        """The default suites: no NULL, anonymous, export, RC4/DES, 3DES or
        CBC suite (testssl's AVERAGE) is offered; strong ones are."""
        for category in ("NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"):
            f = by_id.get("cipherlist_" + category, {})
            self.assertEqual(f.get("finding"), "not offered", "cipherlist_%s: %s"
                             % (category, f))
        self.assertEqual(by_id.get("cipherlist_STRONG", {}).get("finding"), "offered")

    def test_smtps_port(self):
        findings = self.findings("smtps")
        by_id = {f.get("id"): f for f in findings}
        self.assertIn("offered", by_id["TLS1_3"]["finding"])
        self.assert_aead_only(by_id)


if __name__ == "__main__":
    unittest.main(verbosity=2)
