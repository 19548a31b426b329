#!/usr/bin/env python3
"""forward_backlog.py - does forwarding keep pace with acceptance?

    python3 bench/forward_backlog.py [--build-dir build] [--duration 60]
        [--conns 100] [--size 1k] [--workers 2] [--set KEY=VALUE ...]
        [--drain N] [--json FILE]

Runs ringmx (release build, fsync = always) forwarding to a Postfix
smtp-sink on 127.0.0.1, loads it with ringmx-bench for --duration seconds
(persistent sessions, as in compare.py's S4) and samples, once a second,
the messages stored and not yet forwarded (ringmx_forward_pending_records
from /metrics) and the upstream's count (smtp-sink -c). After the client
it waits until the upstream has every accepted message (at most 120 s).

Prints the accepted and delivered rates over the client's run, the backlog
at each sample, and the backlog's growth over the run's second half (a
least-squares slope in messages per second): near zero, or negative, when
forwarding keeps pace. With --drain N it measures forwarding alone
instead: N messages are stored while smtp-sink is stopped (SIGSTOP), then
it goes on, and the time until it has all N gives the rate and the CPU per
message of ringmx and smtp-sink meanwhile. Every process runs from a private scratch directory
and is stopped at the end, also on an error or Ctrl-C.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

LOOPBACK = "127.0.0.1"
DRAIN_MAX_S = 120
SAMPLE_S = 1.0


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


def sink_count(path):
    """smtp-sink -c's running count of messages ended (its last record)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256))
            tail = f.read()
    except OSError:
        return 0
    return max((int(x) for x in re.findall(rb"mesg=(\d+)", tail)), default=0)


def pending(metrics_port):
    """ringmx_forward_pending_records, or -1 when the scrape failed or took
    longer than 5 s (a sample left out)."""
    try:
        with urllib.request.urlopen("http://%s:%d/metrics" % (LOOPBACK, metrics_port),
                                    timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("ringmx_forward_pending_records "):
                    return int(float(line.split()[1]))
    except OSError:
        pass
    return -1


def cpu_s(pid):
    """User + system seconds of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slope(points):
    """Least-squares slope of (t, y) points; 0 with fewer than two."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / var if var else 0.0


def drain(args, bench_argv, srv, sink, counter):
    """--drain N: N messages are stored while the upstream is stopped
    (SIGSTOP: connections wait for its greeting), then it goes on and the
    time until it has all N is forwarding's own rate, acceptance idle."""
    os.kill(sink.pid, signal.SIGSTOP)
    try:
        bench = subprocess.run(bench_argv + ["--messages", str(args.drain)],
                               stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=DRAIN_MAX_S)
        accepted = json.loads(bench.stdout or b"{}").get("messages", 0)
        time.sleep(1.0)  # the last commits and queue entries settle
    finally:
        os.kill(sink.pid, signal.SIGCONT)
    cpu0 = (cpu_s(srv.pid), cpu_s(sink.pid))
    t0 = time.monotonic()
    while sink_count(counter) < accepted and time.monotonic() - t0 < DRAIN_MAX_S:
        time.sleep(0.01)
    t_all = time.monotonic() - t0
    cpu1 = (cpu_s(srv.pid), cpu_s(sink.pid))
    delivered = sink_count(counter)
    return {"drain": args.drain, "conns": args.conns, "size": args.size,
            "workers": args.workers, "settings": args.set, "accepted": accepted,
            "delivered": delivered, "all_delivered_s": round(t_all, 2),
            "delivered_msgs_per_s": round(delivered / t_all) if t_all else 0,
            "server_cpu_us_per_msg": round((cpu1[0] - cpu0[0]) / max(delivered, 1) * 1e6, 1),
            "sink_cpu_us_per_msg": round((cpu1[1] - cpu0[1]) / max(delivered, 1) * 1e6, 1)}


def run(args, tmp):
    procs = []
    try:
        sink_port, port, metrics_port = free_port(), free_port(), free_port()
        counter = os.path.join(tmp, "counter")
        sink_exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        with open(counter, "wb") as out:
            sink = subprocess.Popen([sink_exe, "-u", "nobody", "-c", "-t", "300",
                                     "%s:%d" % (LOOPBACK, sink_port), "4096"],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.DEVNULL)
        procs.append(sink)
        wait_port(sink_port, sink)
        os.mkdir(os.path.join(tmp, "data"))
        conf = os.path.join(tmp, "ringmx.conf")
        lines = ["hostname = mx.bench.invalid", "workers = %d" % args.workers,
                 "listen = %s:%d" % (LOOPBACK, port),
                 "data_dir = %s" % os.path.join(tmp, "data"), "fsync = always",
                 "accept_domains = example.com",
                 "metrics_listen = %s:%d" % (LOOPBACK, metrics_port),
                 "max_connections = 120000", "store_max_bytes = 24G",
                 "shutdown_grace = 5s", "upstream = %s:%d" % (LOOPBACK, sink_port)]
        lines += ["%s = %s" % tuple(kv.split("=", 1)) for kv in args.set]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(tmp, "ringmx.log"), "wb") as log:
            srv = subprocess.Popen([os.path.join(args.build_dir, "ringmx"), "-c", conf],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        procs.append(srv)
        wait_port(port, srv)

        bench_argv = [os.path.join(args.build_dir, "bench", "ringmx-bench"),
                      "--server", "%s:%d" % (LOOPBACK, port), "--conns", str(args.conns),
                      "--size", args.size, "--from", "bench@client.invalid",
                      "--to", "user@example.com", "--helo", "bench.client.invalid",
                      "--json", "-", "--allow-errors"]
        if args.drain:
            return drain(args, bench_argv, srv, sink, counter)
        bench = subprocess.Popen(
            bench_argv + ["--duration", "%g" % args.duration],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(bench)
        cpu0 = (cpu_s(srv.pid), cpu_s(sink.pid))
        t0 = time.monotonic()
        samples = []
        while bench.poll() is None:
            time.sleep(SAMPLE_S)
            samples.append({"t_s": round(time.monotonic() - t0, 2),
                            "pending": pending(metrics_port),
                            "delivered": sink_count(counter)})
        t_client = time.monotonic() - t0
        report = json.loads(bench.stdout.read() or b"{}")
        cpu1 = (cpu_s(srv.pid), cpu_s(sink.pid))
        accepted = report.get("messages", 0)
        delivered_at_client_end = sink_count(counter)
        deadline = time.monotonic() + DRAIN_MAX_S
        while sink_count(counter) < accepted and time.monotonic() < deadline:
            time.sleep(0.02)
        t_all = time.monotonic() - t0
        delivered = sink_count(counter)
        half = [(s["t_s"], s["pending"]) for s in samples
                if s["t_s"] >= t_client / 2 and s["pending"] >= 0]
        return {
            "duration_s": args.duration, "conns": args.conns, "size": args.size,
            "workers": args.workers, "settings": args.set,
            "accepted": accepted, "client_s": round(t_client, 2),
            "accepted_msgs_per_s": round(report.get("msgs_per_s", 0.0)),
            "delivered_during_client": delivered_at_client_end,
            "delivered_during_client_msgs_per_s": round(delivered_at_client_end / t_client),
            "delivered": delivered, "all_delivered_s": round(t_all, 2),
            "delivered_msgs_per_s": round(delivered / t_all) if t_all else 0,
            "backlog_max": max((s["pending"] for s in samples), default=0),
            "backlog_at_client_end": samples[-1]["pending"] if samples else 0,
            "samples_failed": sum(1 for s in samples if s["pending"] < 0),
            "backlog_slope_second_half_msgs_per_s": round(slope(half), 1),
            "server_cpu_us_per_msg": round((cpu1[0] - cpu0[0]) / max(accepted, 1) * 1e6, 1),
            "sink_cpu_us_per_msg": round((cpu1[1] - cpu0[1]) / max(accepted, 1) * 1e6, 1),
            "samples": samples,
        }
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default="build")
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--size", default="1k")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a ringmx.conf line more (repeatable)")
    p.add_argument("--drain", type=int, default=0, metavar="N",
                   help="instead: store N messages with the upstream stopped, then time "
                        "their forwarding alone")
    p.add_argument("--json", metavar="FILE", help="write the result here too")
    args = p.parse_args()
    if not 1 <= args.duration <= 600:
        p.error("--duration: 1 to 600 seconds")
    if not 0 <= args.drain <= 3_000_000:
        p.error("--drain: 0 to 3,000,000 messages")
    for kv in args.set:
        if "=" not in kv:
            p.error("--set wants KEY=VALUE: %s" % kv)
    tmp = tempfile.mkdtemp(prefix="ringmx-backlog-")
    os.chmod(tmp, 0o755)  # smtp-sink runs as nobody
    try:
        res = run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.drain:
        print("forwarded %d of %d stored messages in %.2f s: %d msgs/s; CPU per message: "
              "ringmx %.1f us, smtp-sink %.1f us" % (
                  res["delivered"], res["accepted"], res["all_delivered_s"],
                  res["delivered_msgs_per_s"], res["server_cpu_us_per_msg"],
                  res["sink_cpu_us_per_msg"]))
        return 0 if res["delivered"] >= res["accepted"] else 1
    print("accepted %d in %.1f s: %d msgs/s; delivered meanwhile %d (%d msgs/s); all %d "
          "delivered after %.1f s (%d msgs/s)" % (
              res["accepted"], res["client_s"], res["accepted_msgs_per_s"],
              res["delivered_during_client"], res["delivered_during_client_msgs_per_s"],
              res["delivered"], res["all_delivered_s"], res["delivered_msgs_per_s"]))
    print("backlog: max %d, at the client's end %d, slope over the second half %+.1f msgs/s"
          % (res["backlog_max"], res["backlog_at_client_end"],
             res["backlog_slope_second_half_msgs_per_s"]))
    print("CPU per accepted message: ringmx %.1f us, smtp-sink %.1f us"
          % (res["server_cpu_us_per_msg"], res["sink_cpu_us_per_msg"]))
    print("backlog samples (s: pending): " + " ".join(
        "%g:%d" % (s["t_s"], s["pending"]) for s in res["samples"]))
    return 0 if res["delivered"] >= res["accepted"] else 1


if __name__ == "__main__":
    sys.exit(main())
