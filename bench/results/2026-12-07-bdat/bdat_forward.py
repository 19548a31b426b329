#!/usr/bin/env python3
"""bdat_forward.py - forwarding by BDAT against DATA, to an upstream that
offers CHUNKING.

    python3 bench/results/2026-12-07-bdat/bdat_forward.py --build-dir build-rel
        [--rounds 3] [--drain 100000] [--duration 10] [--conns 100] [--size 1k]
        [--modes drain,load] [--set KEY=VALUE ...] [--json FILE]

Postfix's smtp-sink (the upstream of compare.py's S4 and of
bench/forward_backlog.py) offers no CHUNKING, so there every message goes
by DATA whatever upstream_chunking says. Here the upstream is a second
ringmx (fsync = never, 2 workers: it offers PIPELINING, CHUNKING and
BINARYMIME, and costs little per message); the gateway is ringmx with
fsync = always and 2 workers, as in S4. Each round runs the gateway with
upstream_chunking = yes and then = no (alternating which goes first), in
two modes:

- drain: N messages are stored while the upstream is stopped (SIGSTOP),
  then it goes on; the time until the upstream has all N is forwarding's
  own rate (acceptance idle), with the gateway's and the upstream's CPU per
  message meanwhile (as forward_backlog.py --drain does).
- load: ringmx-bench (persistent sessions, as S4) for --duration seconds
  while forwarding runs; the accepted rate and the rate delivered over the
  same time.

Counts come from the upstream's ringmx_messages_accepted_total. Every
process runs from a private scratch directory and is stopped at the end.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

LOOPBACK = "127.0.0.1"
WAIT_MAX_S = 120


def free_port():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("exited %d before listening" % proc.returncode)
        try:
            socket.create_connection((LOOPBACK, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open" % port)


def metric(port, name):
    try:
        with urllib.request.urlopen("http://%s:%d/metrics" % (LOOPBACK, port), timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return int(float(line.split()[1]))
    except OSError:
        pass
    return -1


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Ringmx:
    def __init__(self, build_dir, tmp, name, lines):
        self.port, self.metrics_port = free_port(), free_port()
        d = self.dir = os.path.join(tmp, name)
        os.makedirs(os.path.join(d, "data"))
        conf = os.path.join(d, "ringmx.conf")
        base = ["hostname = %s.bench.invalid" % name, "workers = 2",
                "listen = %s:%d" % (LOOPBACK, self.port),
                "data_dir = %s" % os.path.join(d, "data"), "accept_domains = example.com",
                "metrics_listen = %s:%d" % (LOOPBACK, self.metrics_port),
                "max_connections = 120000", "store_max_bytes = 24G", "shutdown_grace = 5s",
                "log_level = warn"]
        with open(conf, "w") as f:
            f.write("\n".join(base + lines) + "\n")
        with open(os.path.join(d, "log"), "wb") as log:
            self.proc = subprocess.Popen([os.path.join(build_dir, "ringmx"), "-c", conf],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_port(self.port, self.proc)

    def accepted(self):
        return metric(self.metrics_port, "ringmx_messages_accepted_total")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_argv(args, port):
    return [os.path.join(args.build_dir, "bench", "ringmx-bench"),
            "--server", "%s:%d" % (LOOPBACK, port), "--conns", str(args.conns),
            "--size", args.size, "--from", "bench@client.invalid", "--to", "user@example.com",
            "--helo", "bench.client.invalid", "--json", "-", "--allow-errors"]


def wait_delivered(upstream, want):
    t0 = time.monotonic()
    while upstream.accepted() < want and time.monotonic() - t0 < WAIT_MAX_S:
        time.sleep(0.01)
    return time.monotonic() - t0


def one(args, tmp, chunking, mode, rnd):
    up = gw = None
    try:
        tag = "%s-%s-%d" % (mode, chunking, rnd)
        up = Ringmx(args.build_dir, tmp, "up-" + tag, ["fsync = never"])
        gw = Ringmx(args.build_dir, tmp, "gw-" + tag,
                    ["fsync = always", "upstream = %s:%d" % (LOOPBACK, up.port),
                     "upstream_chunking = %s" % chunking]
                    + ["%s = %s" % tuple(kv.split("=", 1)) for kv in args.set])
        res = {"mode": mode, "upstream_chunking": chunking, "conns": args.conns,
               "size": args.size, "settings": args.set}
        if mode == "drain":
            os.kill(up.proc.pid, signal.SIGSTOP)
            try:
                b = subprocess.run(bench_argv(args, gw.port) + ["--messages", str(args.drain)],
                                   stdin=subprocess.DEVNULL, capture_output=True,
                                   timeout=WAIT_MAX_S)
                accepted = json.loads(b.stdout or b"{}").get("messages", 0)
                time.sleep(1.0)
            finally:
                os.kill(up.proc.pid, signal.SIGCONT)
            c0 = (cpu_s(gw.proc.pid), cpu_s(up.proc.pid))
            t = wait_delivered(up, accepted)
            c1 = (cpu_s(gw.proc.pid), cpu_s(up.proc.pid))
            got = up.accepted()
            res.update({"accepted": accepted, "delivered": got, "drain_s": round(t, 3),
                        "delivered_msgs_per_s": round(got / t) if t else 0,
                        "gateway_cpu_us_per_msg": round((c1[0] - c0[0]) / max(got, 1) * 1e6, 1),
                        "upstream_cpu_us_per_msg":
                            round((c1[1] - c0[1]) / max(got, 1) * 1e6, 1)})
        else:
            c0 = (cpu_s(gw.proc.pid), cpu_s(up.proc.pid))
            t0 = time.monotonic()
            b = subprocess.run(bench_argv(args, gw.port) + ["--duration", "%g" % args.duration],
                               stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=args.duration + WAIT_MAX_S)
            t_client = time.monotonic() - t0
            during = up.accepted()
            rep = json.loads(b.stdout or b"{}")
            accepted = rep.get("messages", 0)
            t_all = t_client + wait_delivered(up, accepted)
            c1 = (cpu_s(gw.proc.pid), cpu_s(up.proc.pid))
            got = up.accepted()
            res.update({"accepted": accepted, "client_s": round(t_client, 2),
                        "accepted_msgs_per_s": round(rep.get("msgs_per_s", 0.0)),
                        "delivered_during_client": during,
                        "delivered_during_client_msgs_per_s": round(during / t_client),
                        "delivered": got, "all_delivered_s": round(t_all, 2),
                        "delivered_msgs_per_s": round(got / t_all) if t_all else 0,
                        "gateway_cpu_us_per_msg": round((c1[0] - c0[0]) / max(got, 1) * 1e6, 1),
                        "upstream_cpu_us_per_msg":
                            round((c1[1] - c0[1]) / max(got, 1) * 1e6, 1)})
        # the gateway's pool: connections it opened to the upstream
        res["upstream_connections"] = metric(up.metrics_port, "ringmx_connections_accepted_total")
        return res
    finally:
        for r in (gw, up):
            if r is not None:
                r.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default="build")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--drain", type=int, default=100000)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--size", default="1k")
    p.add_argument("--modes", default="drain,load")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a gateway config line more (repeatable), e.g. upstream_connections=1")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    if not 1 <= args.rounds <= 10 or not 1000 <= args.drain <= 1_000_000 \
            or not 1 <= args.duration <= 120:
        p.error("--rounds 1-10, --drain 1000-1000000, --duration 1-120")
    out = []
    tmp = tempfile.mkdtemp(prefix="ringmx-bdat-bench-")
    try:
        for r in range(args.rounds):
            order = ["yes", "no"] if r % 2 == 0 else ["no", "yes"]
            for mode in args.modes.split(","):
                for chunking in order:
                    res = one(args, tmp, chunking, mode, r)
                    res["round"] = r
                    out.append(res)
                    print(json.dumps(res), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
