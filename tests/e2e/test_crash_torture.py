#!/usr/bin/env python3
"""Crash torture: 20 kill -9 cycles of the real binary under load while it
forwards to a real upstream (Postfix smtp-sink dumping every message).

Each cycle starts the gateway on the same data_dir, lets client threads
send messages of mixed sizes (up to about 200 KB) for a random 0.4-1.2 s,
and kills it with SIGKILL, so kills land during DATA, group commits,
segment rollovers, forwarding and delivery-log commits, and each start
recovers the tails the last kill tore. After every restart, every queue id
acknowledged so far must be in the store (ringmx-store ls) or at the
upstream. At the end the gateway runs until the upstream holds every
acknowledged message; each delivered copy must be byte for byte what was
sent, under a Received: header carrying the queue id its 250 gave.
Duplicates (a kill between the upstream's 250 and the delivery-log commit)
are allowed and counted. Each run commits its own way: buffered or direct
(store_io = direct where the file system takes O_DIRECT), with one to three
group commits in flight. The load and those choices are drawn from a seed,
printed (RINGMX_TORTURE_SEED replays it).
"""

import hashlib
import os
import random
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmx_harness as h  # noqa: E402
import upstream as up  # noqa: E402

CYCLES = 20
CLIENTS = 4
LOAD_MIN_S = 0.4
LOAD_MAX_S = 1.2
DELIVERY_TIMEOUT_S = 90.0


def set_commit_way(srv, store_io, commits_in_flight):
    """Rewrites the two commit keys in srv's config file for its next start."""
    with open(srv.config_path) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        key = line.split("=", 1)[0].strip()
        if key == "store_io":
            line = "store_io = %s" % store_io
        elif key == "commits_in_flight":
            line = "commits_in_flight = %d" % commits_in_flight
        out.append(line)
    with open(srv.config_path, "w") as f:
        f.write("\n".join(out) + "\n")


def body_for(token, seq, index):
    """A message of mixed size: mostly small, some tens of KB, a few about
    200 KB (which cross 1 MiB segments often)."""
    pick = (seq * 7919 + index * 104729) % 100
    size = 200 + seq * 37 % 3000 if pick < 80 else \
        20000 + seq * 131 % 40000 if pick < 97 else 150000 + seq * 17 % 50000
    line = ("%s " % token) * 3
    filler = (line * (size // len(line) + 1))[:size]
    lines = [filler[i:i + 76] for i in range(0, len(filler), 76)]
    return ("Subject: %s\r\n\r\n%s\r\n" % (token, "\r\n".join(lines))).encode()


def sender_loop(port, index, stop, acked, lock):
    """Sends until stop is set; records (queue_id, token, SHA-256 of the
    body) for every 250."""
    seq = 0
    while not stop.is_set():
        try:
            with h.SmtpConn(port, timeout=10) as c:
                if c.cmd("EHLO torture%d.example" % index).code != 250:
                    time.sleep(0.05)
                    continue
                while not stop.is_set():
                    token = "torture-%d-%d-%s" % (index, seq, os.urandom(6).hex())
                    seq += 1
                    body = body_for(token, seq, index)
                    c.send(b"MAIL FROM:<c@torture.example>\r\nRCPT TO:<user@example.com>\r\n"
                           b"DATA\r\n")
                    rs = [c.reply() for _ in range(3)]
                    if [r.code for r in rs] != [250, 250, 354]:
                        break
                    c.send(h.dot_stuff(body))
                    r = c.reply()
                    m = h.QUEUED_RE.match(r.lines[-1])
                    if m:
                        with lock:
                            acked.append((m.group(1).decode().upper(), token,
                                          hashlib.sha256(body).digest()))
        except (OSError, h.Closed, AssertionError, ValueError):
            # the gateway died under us; reconnecting fails until stop
            time.sleep(0.05)


class DeliveredCopies:
    """The upstream's complete dumps, each parsed once (a complete dump never
    changes) into {path: (token, queue id of its Received:, SHA-256 of the
    message after that header)}."""

    def __init__(self, sink):
        self.sink = sink
        self.parsed = {}

    def refresh(self):
        for path in self.sink.dump_files():
            if path in self.parsed:
                continue
            with open(path, "rb") as f:
                data = f.read()
            try:
                d = up.Dump(path, data)
            except AssertionError:
                if data.endswith(b"\n\n"):
                    raise
                continue  # still being written
            subject = next((l for l in d.message.split(b"\r\n")
                            if l.startswith(b"Subject: ")), b"Subject: ")
            header, rest = h.split_received(d.message)
            m = h.RECEIVED_RE.match(header)
            qid = m.group("id").upper() if m else "no id in %r" % header
            self.parsed[path] = (subject[len(b"Subject: "):].decode(), qid,
                                 hashlib.sha256(rest).digest())
        return self

    def tokens(self):
        return {t for t, _, _ in self.parsed.values()}


class CrashTorture(unittest.TestCase):

    def setUp(self):
        up.require_root()

    def check_present(self, srv, copies, acked, cycle):
        """Every acknowledged id is in the store or at the upstream. The
        store is listed first: a message that leaves it was delivered
        before, so the upstream's later listing holds it."""
        listed = set(srv.ls_ids())
        delivered = copies.refresh().tokens()
        missing = [(q, t) for q, t, _ in acked if q not in listed and t not in delivered]
        self.assertEqual(missing, [], "after kill %d: %d of %d acknowledged messages neither "
                         "in the store nor at the upstream, e.g. %s;\ngateway log tail:\n%s"
                         % (cycle, len(missing), len(acked), missing[:5],
                            srv.stderr_text()[-3000:]))
        return len(listed), len(delivered)

    def test_kill9_cycles_under_load(self):
        seed = int(os.environ.get("RINGMX_TORTURE_SEED", "0") or "0") or \
            int.from_bytes(os.urandom(4), "little")
        rng = random.Random(seed)
        print("crash torture: seed %d" % seed, file=sys.stderr)
        sink = up.Sink()
        self.addCleanup(sink.cleanup)
        sink.start()
        copies = DeliveredCopies(sink)
        settings = [(k, v) for k, v in up.forward_settings([sink.port])
                    if k not in ("segment_size", "max_message_size")]
        settings += [("segment_size", "1M"), ("max_message_size", "256k"),
                     ("store_io", "buffered"), ("commits_in_flight", "1")]
        srv = h.Server(settings=settings)
        self.addCleanup(srv.cleanup)
        all_acked = []
        commit_paths = ["buffered", "direct"] if h.o_direct_works(srv.tmp) else ["buffered"]
        t0 = time.monotonic()
        for cycle in range(CYCLES):
            # Each run commits its own way (drawn from the seed): buffered or
            # direct, one to three group commits in flight; each recovers
            # what the last run, committing another way, left.
            commit_way = (rng.choice(commit_paths), rng.choice([1, 2, 3]))
            set_commit_way(srv, *commit_way)
            srv.start()
            if all_acked:
                in_store, at_upstream = self.check_present(srv, copies, all_acked, cycle - 1)
            else:
                in_store, at_upstream = 0, 0
            stop = threading.Event()
            lock = threading.Lock()
            acked = []
            threads = [threading.Thread(target=sender_loop,
                                        args=(srv.port, i, stop, acked, lock), daemon=True)
                       for i in range(CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(LOAD_MIN_S, LOAD_MAX_S))
            srv.kill9()
            self.assertEqual(srv.exit_status, -signal.SIGKILL)
            stop.set()
            for t in threads:
                t.join(timeout=30)
            self.assertFalse(any(t.is_alive() for t in threads), "client threads hang")
            srv.check_stderr(self)
            with lock:
                all_acked.extend(acked)
            print("torture cycle %2d (store_io %s, %d in flight): %3d acknowledged before "
                  "the kill (%d in all; at the start %d listed in the store, %d at the "
                  "upstream)" % ((cycle,) + commit_way + (len(acked), len(all_acked), in_store,
                                                          at_upstream)),
                  file=sys.stderr)
        self.assertGreater(len(all_acked), CYCLES, "too little load to mean anything")
        ids = [q for q, _, _ in all_acked]
        self.assertEqual(len(set(ids)), len(ids), "a queue id was acknowledged twice")

        # The last restart: recovery once more, then everything is forwarded.
        srv.start()
        self.check_present(srv, copies, all_acked, CYCLES - 1)
        want = {t for _, t, _ in all_acked}
        if not up.wait_for(lambda: want <= copies.refresh().tokens(), DELIVERY_TIMEOUT_S, 0.5):
            missing = sorted(want - copies.refresh().tokens())
            self.fail("%d of %d acknowledged messages never reached the upstream, e.g. %s;"
                      "\ngateway log tail:\n%s" % (len(missing), len(want), missing[:5],
                                                   srv.stderr_text()[-3000:]))
        srv.stop_checked(self)

        # Intact: every copy at the upstream is the message sent, under the
        # Received: header of the queue id acknowledged for it.
        sent = {t: (q, b) for q, t, b in all_acked}
        count = {}
        for token, qid_delivered, digest in copies.refresh().parsed.values():
            if token not in sent:
                continue  # written but unacknowledged when a kill came: allowed
            qid, body_digest = sent[token]
            self.assertEqual(qid_delivered, qid, "%s: delivered under another queue id"
                             % token)
            self.assertEqual(digest, body_digest, "%s (%s): the delivered message differs "
                             "from the one sent" % (token, qid))
            count[token] = count.get(token, 0) + 1
        self.assertEqual(set(count), want)
        dups = sum(n - 1 for n in count.values())
        print("crash torture: %d kills in %.0fs, %d acknowledged, all delivered intact, "
              "%d duplicates" % (CYCLES, time.monotonic() - t0, len(all_acked), dups),
              file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
