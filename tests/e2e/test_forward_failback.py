#!/usr/bin/env python3
"""Failing back to the first relay once it recovers (smtp-sink upstreams).

The first relay is down, so mail goes to the second. Then the first comes
back. A connection to a fallback relay lives at most a minute, and a relay
marked down is skipped for half a minute, so within about 70 seconds new
mail must go to the first relay again, while nothing is lost or doubled
on the way. (About 80 seconds in all.)
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

FAILBACK_WITHIN_S = 75.0


class ForwardFailback(unittest.TestCase):

    def send_one(self, srv, tag):
        token = h.unique_token(tag)
        with srv.conn() as c:
            h.send_message(self, c, b"Subject: " + token.encode() + b"\r\n\r\nx\r\n",
                           helo="failback.example")
            c.cmd("QUIT")
        return token

    def test_failback_to_recovered_primary(self):
        up.require_root()
        primary_port = h.free_port()
        secondary = up.Sink()
        self.addCleanup(secondary.cleanup)
        secondary.start()
        srv = h.Server(settings=up.forward_settings([primary_port, secondary.port]))
        self.addCleanup(srv.cleanup)
        srv.start()
        sent = [self.send_one(srv, "early%d" % i) for i in range(4)]
        self.assertTrue(up.wait_for(lambda: set(sent) <= set(secondary.subjects()), 30, 0.2),
                        "the second relay did not get the mail while the first was down")
        primary = up.Sink(port=primary_port)
        self.addCleanup(primary.cleanup)
        primary.start()
        t0 = time.monotonic()
        # keep a trickle of mail flowing, so fallback connections stay busy
        at_primary = None
        while time.monotonic() - t0 < FAILBACK_WITHIN_S:
            sent.append(self.send_one(srv, "late"))
            time.sleep(1.0)
            if primary.subjects():
                at_primary = time.monotonic() - t0
                break
        self.assertIsNotNone(at_primary, "no mail went to the recovered first relay within "
                             "%.0fs" % FAILBACK_WITHIN_S)
        print("failback: first relay used again %.1fs after it came back" % at_primary,
              file=sys.stderr)
        both = {}
        ok = up.wait_for(lambda: set(sent) <= set(primary.subjects()) | set(secondary.subjects()),
                         30, 0.2)
        self.assertTrue(ok, "mail lost around the failback")
        time.sleep(1.0)
        for sink in (primary, secondary):
            for t, n in sink.subjects().items():
                both[t] = both.get(t, 0) + n
        self.assertEqual({t: n for t, n in both.items() if n > 1}, {}, "duplicates")
        h.stop_and_check(srv)


if __name__ == "__main__":
    unittest.main()
