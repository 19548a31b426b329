#!/usr/bin/env python3
"""`ringmx --check-config`: a valid file prints the effective configuration
(which reads back to the same print) and exits 0 without starting anything;
an invalid one exits 2 naming the file and line."""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402


def check(path):
    return subprocess.run([h.ringmx_bin(), "--check-config", "-c", path],
                          capture_output=True, timeout=60)


class CheckConfigTest(unittest.TestCase):

    def write(self, text):
        d = tempfile.mkdtemp(prefix="ringmx-check-")
        path = os.path.join(d, "ringmx.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_valid_file_prints_effective_config(self):
        path = self.write("hostname = mx.example.org\nlisten = 127.0.0.1:2999\n"
                          "accept_domains = example.org example.net.\n"
                          "retry_min = 90\nlog_level = warn\nupstream = 127.0.0.1:2998\n")
        p = check(path)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        out = p.stdout.decode()
        for line in ("hostname = mx.example.org", "listen = 127.0.0.1:2999",
                     "accept_domains = example.org example.net", "retry_min = 90s",
                     "log_level = warn", "upstream = 127.0.0.1:2998", "fsync = always",
                     "max_message_size = 10240000", "metrics_listen = 127.0.0.1:9225"):
            self.assertIn(line + "\n", out)
        # Nothing was started: no data directory appeared where we ran.
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(path), "ringmx-data")))
        again = check(self.write(out))
        self.assertEqual(again.returncode, 0, again.stderr.decode())
        body = lambda text: text.split("\n", 1)[1]  # noqa: E731 (first line names the file)
        self.assertEqual(body(again.stdout.decode()), body(out))

    def test_invalid_file_names_the_line(self):
        path = self.write("workers = 2\nretry_max = soon\n")
        p = check(path)
        self.assertEqual(p.returncode, 2)
        self.assertIn(path + ":2: retry_max", p.stderr.decode())
        self.assertEqual(p.stdout, b"")


if __name__ == "__main__":
    unittest.main(verbosity=2)
