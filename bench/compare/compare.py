#!/usr/bin/env python3
"""compare.py - ringmx side by side with Postfix smtp-sink, Postfix smtpd
and Haraka, driven by ringmx-bench and by Postfix's smtp-source.

    python3 bench/compare/compare.py [--rounds 3] [--scenarios S1,S4] ...
    (make bench runs it with the defaults; --help lists the options)

Scenarios (bench/README.md has the details):
  S1 accept, 1 KiB messages, 100 persistent connections
  S2 the same with 32 KiB messages
  S3 one new connection per message (1 KiB, 100 concurrent)
  S4 end to end: each system forwards to an upstream smtp-sink, which
     counts; the rate is N messages over the time until all N arrived
  S5 idle connections plus 1,000 active: throughput and memory
  S6 latency at 50% of each system's own S1 peak (open loop, --rate)
  S6-roll S6 with 8 MiB segments: the ack latency while segments roll over
     (ringmx only; scale.py)
  S6-source smtp-source (one command per round trip): ringmx's ack and
     commit histograms side by side (ringmx only)
  --scale: how ringmx's cost grows with message size, open connections and
     workers (scale.py); the tables go to bench/results/<date>-scale/
  TLS-S1 S1 over STARTTLS: one handshake per persistent connection
  TLS-S3 S3 over STARTTLS: a new connection and a full handshake per message
With a TLS scenario, each round also runs ringmx-tls-speed (full TLS 1.3
handshakes per second per core and AES-GCM bytes/s with the linked
wolfSSL). TLS scenarios run ringmx-bench only (smtp-source has no TLS) and
leave out smtp-sink (it has none either); the certificate is made at run
time with openssl (--tls-cert ecdsa, P-256, the default, or rsa, 2048).

Each scenario runs every system in turn, a fresh instance per round, the
order rotated each round; the two clients alternate which goes first.
Runs that take a message count (smtp-source, S4) are sized from a short
probe so each takes about --run-seconds. The results (medians, ratios to
ringmx durable, the issue's targets as PASS/FAIL) go to
bench/results/<date>-<host>.md and .json, charts to .png via gnuplot
(bench/compare/plot.gp).

Every server runs on 127.0.0.1 from a private scratch directory and is
stopped at the end, also on an error or Ctrl-C.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import measure  # noqa: E402
import results  # noqa: E402
import scale  # noqa: E402
import systems  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))

SCENARIOS = {
    "S1": {"title": "accept, 1 KiB, 100 persistent connections",
           "size": "1k", "source_len": 1024, "conns": 100, "persistent": True,
           "clients": ("ringmx-bench", "smtp-source")},
    "S2": {"title": "accept, 32 KiB, 100 persistent connections",
           "size": "32k", "source_len": 32768, "conns": 100, "persistent": True,
           "clients": ("ringmx-bench", "smtp-source")},
    "S3": {"title": "accept, 1 KiB, a new connection per message (100 at a time)",
           "size": "1k", "source_len": 1024, "conns": 100, "persistent": False,
           "clients": ("ringmx-bench", "smtp-source")},
    "S4": {"title": "end to end: accept and forward to an upstream smtp-sink, 1 KiB, "
                    "100 connections",
           "size": "1k", "source_len": 1024, "conns": 100, "persistent": True,
           "clients": ("ringmx-bench", "smtp-source")},
    "S5": {"title": "idle connections plus 1,000 active (1 KiB, persistent)",
           "size": "1k", "source_len": 1024, "conns": 1000, "persistent": True,
           "clients": ("ringmx-bench",)},
    "S6": {"title": "ack latency at 50% of each system's own S1 peak (open loop)",
           "size": "1k", "source_len": 1024, "conns": 100, "persistent": True,
           "clients": ("ringmx-bench",)},
    "S6-roll": {"title": "S6 with segment_size = 8M: ack latency while segments roll over",
                "size": "1k", "source_len": 1024, "conns": 100, "persistent": True,
                "clients": ("ringmx-bench",)},
    "S6-source": {"title": "smtp-source, one command per round trip: ringmx's ack and "
                           "commit histograms (1 KiB, 100 sessions)",
                  "size": "1k", "source_len": 1024, "conns": 100, "persistent": True,
                  "clients": ("smtp-source",)},
    "TLS-S1": {"title": "accept over STARTTLS, 1 KiB, 100 persistent connections "
                        "(one handshake each)",
               "size": "1k", "source_len": 1024, "conns": 100, "persistent": True,
               "clients": ("ringmx-bench",), "tls": True, "plain": "S1"},
    "TLS-S3": {"title": "accept over STARTTLS, 1 KiB, a new connection and a full "
                        "handshake per message (100 at a time)",
               "size": "1k", "source_len": 1024, "conns": 100, "persistent": False,
               "clients": ("ringmx-bench",), "tls": True, "plain": "S3"},
}
DEFAULT_SCENARIOS = "S1,S2,S3,S4,S5,S6,S6-roll,S6-source,TLS-S1,TLS-S3"

# systems that forward (S4 runs only these)
FORWARDING = ("ringmx-durable", "ringmx-nofsync", "postfix", "haraka-forward")
# scenarios that read ringmx's own histograms
RINGMX_ONLY = ("S6-roll", "S6-source")
# S5 measures holding connections; the queue plugin does not matter there
S5_SYSTEMS = ("ringmx-durable", "ringmx-nofsync", "smtp-sink", "postfix", "haraka-discard")
# the TLS scenarios: every system with TLS (smtp-sink has none)
TLS_SYSTEMS = ("ringmx-durable", "ringmx-nofsync", "postfix", "haraka-forward",
               "haraka-discard")
TLS_SPEED_HANDSHAKES = 2000
TLS_SPEED_HANDSHAKES_QUICK = 300

PROBE_MESSAGES = {"S1": 2000, "S2": 1000, "S3": 1000, "S4": 1500, "S6-source": 2000}
COUNT_MIN = 500
COUNT_MAX = 3_000_000
CLIENT_SLACK_S = 120       # a client run may take this much longer than planned
S4_DRAIN_MAX_S = 120       # after the client, wait at most this for the sink count
S5_RAMP_MAX_S = 120        # wait at most this for the idle connections to open
S5_RAMP_STALL_S = 8        # ... or until their count stopped growing for this long


class RunFailed(Exception):
    pass


def log(msg):
    print("compare: " + msg, flush=True)


# --------------------------------------------------------------- processes

def spawn_wait(argv, timeout_s, out_path):
    """Runs argv with stdout and stderr into out_path; returns (exit status,
    wall seconds, CPU seconds of the child from wait4). Kills it (by pid)
    past timeout_s."""
    with open(out_path, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    deadline = t0 + timeout_s
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, ru.ru_utime + ru.ru_stime


def read_text(path, limit=4000):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data[-limit:].decode("utf-8", "replace")
    except OSError:
        return ""


class Harness:
    def __init__(self, args):
        self.args = args
        self.build_dir = os.path.abspath(args.build_dir)
        self.ringmx = os.path.join(self.build_dir, "ringmx")
        self.bench = os.path.join(self.build_dir, "bench", "ringmx-bench")
        self.tls_speed = os.path.join(self.build_dir, "bench", "ringmx-tls-speed")
        self.tls_speed_runs = []   # ringmx-tls-speed, one per round
        self.ringmx_version = None
        self.scratch = None
        self.runs = []
        self.estimates = {}        # (scenario, system, client) -> msgs/s
        self.peaks = {}            # system -> closed-loop msgs/s (S6)
        self.nofile = None
        self.loads = []
        self.others = []           # others_cpu_share per run
        self.cpus = os.cpu_count() or 1
        self.notes = []
        self.seq = 0
        self.source = (None, False)  # git commit of the tree, modified or not
        self.scenarios = SCENARIOS   # for scale.py
        self.log = log
        self.RunFailed = RunFailed

    # ------------------------------------------------------------ set-up

    def ensure_built(self):
        if all(os.access(p, os.X_OK) for p in (self.ringmx, self.bench, self.tls_speed)):
            return
        log("building the release binaries in %s" % self.build_dir)
        for argv in (["cmake", "-S", REPO, "-B", self.build_dir,
                      "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                     ["cmake", "--build", self.build_dir, "-j", str(os.cpu_count() or 2),
                      "--target", "ringmx", "ringmx-bench", "ringmx-tls-speed"]):
            if subprocess.run(argv).returncode != 0:
                raise SystemExit("compare: build failed: %s" % " ".join(argv))

    def check_tools(self):
        for name in ("smtp-sink", "smtp-source", "postfix"):
            systems.program(name)
        if os.geteuid() != 0:
            raise SystemExit("compare: run as root (smtp-sink -u nobody, postfix -c DIR)")
        if any(s.startswith("haraka") for s in self.args.systems):
            systems.haraka_install()
        if any(SCENARIOS[s].get("tls") for s in self.args.scenarios):
            systems.program("openssl")

    def out(self, name):
        self.seq += 1
        return os.path.join(self.scratch, "%04d-%s.out" % (self.seq, name))

    # ------------------------------------------------------------ clients

    def bench_argv(self, port, scn, conns=None, duration_s=None, messages=None,
                   rate=None, extra=()):
        argv = [self.bench, "--server", "%s:%d" % (systems.LOOPBACK, port),
                "--threads", str(self.args.bench_threads),
                "--conns", str(conns or scn["conns"]), "--size", scn["size"],
                "--from", systems.SENDER, "--to", systems.RCPT,
                "--helo", systems.CLIENT_HELO, "--json", "-", "--allow-errors"]
        if not scn["persistent"]:
            argv.append("--new-conn-per-message")
        if scn.get("tls"):
            argv.append("--tls")
        if messages:
            argv += ["--messages", str(messages)]
        else:
            argv += ["--duration", "%g" % duration_s]
        if rate:
            argv += ["--rate", "%.1f" % rate]
        return argv + list(extra)

    def run_bench(self, argv, planned_s):
        out = self.out("bench")
        err_path = out + ".err"
        with open(out, "wb") as o, open(err_path, "wb") as e:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=o, stderr=e)
        try:
            rc = proc.wait(timeout=planned_s + CLIENT_SLACK_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RunFailed("ringmx-bench did not finish in time: %s" % read_text(err_path))
        try:
            with open(out) as f:
                res = json.load(f)
        except (OSError, ValueError):
            raise RunFailed("ringmx-bench exited %d without JSON: %s"
                            % (rc, read_text(err_path)))
        res["exit_status"] = rc
        return res

    def source_argv(self, port, scn, messages):
        argv = [systems.program("smtp-source"), "-s", str(scn["conns"]), "-m", str(messages),
                "-l", str(scn["source_len"]), "-f", systems.SENDER, "-t", systems.RCPT,
                "-M", systems.CLIENT_HELO]
        if scn["persistent"]:
            argv.append("-d")
        return argv + ["%s:%d" % (systems.LOOPBACK, port)]

    def run_source(self, port, scn, messages, planned_s):
        out = self.out("source")
        rc, wall, cpu = spawn_wait(self.source_argv(port, scn, messages),
                                   planned_s + CLIENT_SLACK_S, out)
        res = {"messages": messages if rc == 0 else 0, "elapsed_s": wall,
               "msgs_per_s": messages / wall if rc == 0 and wall > 0 else 0.0,
               "client_cpu_s": cpu, "exit_status": rc, "errors": 0 if rc == 0 else None}
        if rc != 0:
            res["error_text"] = read_text(out, 600)
        return res

    def warm_up(self, srv, scn):
        """A short unmeasured ringmx-bench run with the scenario's
        connections: Postfix has forked its smtpd and cleanup processes,
        Haraka's JIT has compiled its hot paths, ringmx has touched its
        buffers, before anything is measured."""
        w = self.args.warmup_seconds
        if w > 0:
            self.run_bench(self.bench_argv(srv.port, scn, duration_s=w), w)

    # ------------------------------------------------------------ measuring

    def measure(self, server, fn, sink=None):
        """Runs fn() while sampling the server's process tree; returns
        (fn's result, dict of CPU/RSS/PSS/load figures). others_cpu_s is
        the machine's busy CPU time during the run less the server's, the
        client's and the upstream sink's: what everything else used (other
        work on the machine, and this harness)."""
        tree = server.tree()
        sink_tree = sink.tree() if sink is not None else None
        load = measure.loadavg()
        before = tree.sample()
        sink_before = sink_tree.sample().cpu_s if sink_tree else 0.0
        busy_before = measure.cpu_busy_s()
        t0 = time.monotonic()
        sampler = measure.RssSampler(tree)
        sampler.start()
        iowq = measure.IowqSampler(tree)
        iowq.start()
        mport = getattr(server, "metrics_port", None)
        commits_before = measure.scrape(mport) if mport else None
        try:
            res = fn()
        finally:
            sampler.stop()
            iowq.stop()
        commits = self.commit_latency(mport, commits_before) if mport else {}
        after = tree.sample()
        wall = time.monotonic() - t0
        busy = measure.cpu_busy_s() - busy_before
        sink_cpu = (sink_tree.sample().cpu_s - sink_before) if sink_tree else 0.0
        server_cpu = after.cpu_s - before.cpu_s
        client_cpu = res.get("bench_cpu_s", res.get("client_cpu_s")) or 0.0
        others = max(0.0, busy - server_cpu - client_cpu - sink_cpu)
        m = {"server_cpu_s": server_cpu,
             "rss_max_kib": max(sampler.max_rss_kib, after.rss_kib),
             "procs_max": max(sampler.max_procs, after.procs),
             "pss_end_kib": tree.pss_kib(), "load1": load[0],
             "upstream_sink_cpu_s": sink_cpu if sink_tree else None,
             "machine_busy_s": busy, "others_cpu_s": others,
             "others_cpu_share": others / (wall * self.cpus) if wall > 0 else None,
             # io_uring's worker threads (punted file I/O): their share of the server's CPU
             "iowq_cpu_s": iowq.cpu_s(),
             "iowq_cpu_share": iowq.cpu_s() / server_cpu if server_cpu > 0 else None}
        m.update(commits)
        self.loads.append(load[0])
        self.others.append(m["others_cpu_share"])
        return res, m

    def commit_latency(self, mport, before_text):
        """ringmx's group commits during a run (its fsync latency histogram:
        from the batch's submission to its completion): count, p50, p99."""
        name = "ringmx_store_fsync_latency_seconds"
        d = measure.histogram_delta(measure.histogram_buckets(measure.scrape(mport), name),
                                    measure.histogram_buckets(before_text, name))
        out = {"commits": d[-1][1] if d else 0}
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            v = measure.histogram_quantile(q, d)
            out["commit_%s_us" % label] = v * 1e6 if v is not None else None
        return out

    def record(self, scn_name, sysname, client, rnd, res, m, extra=None):
        run = {"scenario": scn_name, "system": sysname, "client": client, "round": rnd}
        run.update(m)
        for k in ("messages", "errors", "elapsed_s", "msgs_per_s", "exit_status",
                  "error_text", "errors_by_code", "connection_failures", "timeouts",
                  "bench_cpu_s", "client_cpu_s", "latency_ack_us", "latency_txn_us",
                  "schedule_kept", "schedule_late", "schedule_never_started",
                  "rate_target", "no_pipelining_sessions", "connects", "tls_handshakes",
                  "tls_handshakes_per_s", "tls_resumed", "tls_failures",
                  "latency_handshake_us", "tls_version", "tls_cipher",
                  "no_starttls_sessions"):
            if k in res:
                run[k] = res[k]
        if "bench_cpu_s" in res:
            run["client_cpu_s"] = res["bench_cpu_s"]
        if extra:
            run.update(extra)
        count = run.get("delivered") if scn_name == "S4" else run.get("messages")
        if count:
            run["server_cpu_us_per_msg"] = run["server_cpu_s"] * 1e6 / count
            if run.get("tls_handshakes"):
                run["server_cpu_us_per_handshake_and_msg"] = (
                    run["server_cpu_s"] * 1e6 / max(count, run["tls_handshakes"]))
            if run.get("client_cpu_s") is not None:
                run["client_cpu_us_per_msg"] = run["client_cpu_s"] * 1e6 / count
        self.runs.append(run)
        rate = run.get("delivered_msgs_per_s", run.get("msgs_per_s", 0.0))
        err = run.get("errors")
        log("  %s %-15s %-12s round %d: %9.0f msgs/s%s, server %s us/msg, RSS max %.1f MiB,"
            " load %.1f, others %.0f%%%s" % (scn_name, sysname, client, rnd, rate or 0.0,
                              " (delivered)" if scn_name == "S4" else "",
                              "%.1f" % run["server_cpu_us_per_msg"]
                              if "server_cpu_us_per_msg" in run else "-",
                              run["rss_max_kib"] / 1024.0, run["load1"],
                              100.0 * (run.get("others_cpu_share") or 0.0),
                              "" if not err else ", ERRORS %s %s"
                              % (err, run.get("errors_by_code", ""))))
        return run

    def plan_count(self, key, planned_s, probe):
        """Messages for a counted run of about planned_s seconds, from the
        last measured rate for key, or from probe(n) -> msgs/s."""
        rate = self.estimates.get(key)
        if rate is None:
            n = PROBE_MESSAGES[key[0]]
            for _ in range(3):
                t0 = time.monotonic()
                rate = probe(n)
                if rate <= 0:
                    raise RunFailed("probe of %d messages failed" % n)
                if time.monotonic() - t0 >= 1.0:
                    break
                n = int(min(COUNT_MAX, max(n * 2, rate * 1.5)))
        return int(min(COUNT_MAX, max(COUNT_MIN, rate * planned_s)))

    # ------------------------------------------------------------ scenarios

    def start_server(self, sysname, upstream_port=None, procs=None, tls=None, workers=2,
                     extra_lines=()):
        extra_lines = tuple(extra_lines) + tuple(self.args.ringmx_config or ())
        srv = systems.make_system(sysname, self.scratch, self.ringmx, tls=tls,
                                  workers=workers, extra_lines=extra_lines)
        try:
            srv.start(upstream_port=upstream_port, procs=procs)
        except BaseException:
            srv.cleanup(keep=self.args.keep)
            raise
        return srv

    def with_servers(self, sysname, scn_name, fn, procs=None, workers=2, extra_lines=()):
        """Starts an upstream sink when the system needs one, then the
        system (ringmx: with workers and extra config lines); runs
        fn(server, sink); stops both."""
        sink = None
        srv = None
        try:
            needs = scn_name == "S4" or sysname == "haraka-forward"
            if needs:
                sink = systems.SmtpSink(self.scratch, count=True).start()
            tls = self.args.tls_cert if SCENARIOS[scn_name].get("tls") else None
            srv = self.start_server(sysname, sink.port if sink else None, procs, tls,
                                    workers=workers, extra_lines=extra_lines)
            return fn(srv, sink)
        finally:
            if srv is not None:
                srv.cleanup(keep=self.args.keep)
            if sink is not None:
                sink.cleanup(keep=self.args.keep)

    def round_clients(self, scn, rnd):
        """The scenario's clients chosen on the command line, in an order
        that alternates from round to round."""
        clients = [c for c in scn["clients"] if c in self.args.clients]
        if rnd % 2 == 0:
            clients.reverse()
        return clients

    def accept_round(self, scn_name, sysname, rnd):
        """S1-S3: both clients against one instance."""
        scn = SCENARIOS[scn_name]
        run_s = self.args.run_seconds

        def body(srv, sink):
            clients = self.round_clients(scn, rnd)
            try:
                self.warm_up(srv, scn)
            except RunFailed as e:
                self.fail(scn_name, sysname, "warm-up", rnd, e, srv)
                return
            for client in clients:
                key = (scn_name, sysname, client)
                try:
                    if client == "ringmx-bench":
                        argv = self.bench_argv(srv.port, scn, duration_s=run_s)
                        res, m = self.measure(srv, lambda: self.run_bench(argv, run_s), sink)
                    else:
                        n = self.plan_count(key, run_s, lambda k: self.run_source(
                            srv.port, scn, k, run_s * 4)["msgs_per_s"])
                        res, m = self.measure(srv, lambda: self.run_source(
                            srv.port, scn, n, run_s), sink)
                    run = self.record(scn_name, sysname, client, rnd, res, m)
                    if run.get("msgs_per_s"):
                        self.estimates[key] = run["msgs_per_s"]
                except RunFailed as e:
                    self.fail(scn_name, sysname, client, rnd, e, srv)
        self.with_servers(sysname, scn_name, body)

    def s4_once(self, srv, sink, client, scn, n, planned_s):
        counter = sink.counter()
        base = counter.count()
        t0 = time.monotonic()
        if client == "ringmx-bench":
            res = self.run_bench(self.bench_argv(srv.port, scn, messages=n), planned_s * 4)
        else:
            res = self.run_source(srv.port, scn, n, planned_s * 4)
        accepted = res.get("messages", 0)
        got, t_done = counter.wait_for(base + accepted,
                                       time.monotonic() + max(S4_DRAIN_MAX_S, planned_s * 4))
        delivered = got - base
        span = t_done - t0
        res["delivered"] = delivered
        res["delivered_all"] = delivered >= accepted and accepted == n
        res["delivery_span_s"] = span
        res["delivered_msgs_per_s"] = delivered / span if span > 0 else 0.0
        return res

    def forward_round(self, scn_name, sysname, rnd):
        scn = SCENARIOS[scn_name]
        run_s = self.args.run_seconds

        def body(srv, sink):
            clients = self.round_clients(scn, rnd)
            for client in clients:
                key = (scn_name, sysname, client)
                try:
                    n = self.plan_count(key, run_s, lambda k: self.s4_once(
                        srv, sink, client, scn, k, run_s)["delivered_msgs_per_s"])
                    res, m = self.measure(srv, lambda: self.s4_once(srv, sink, client, scn,
                                                                   n, run_s), sink)
                    extra = {k: res[k] for k in ("delivered", "delivered_all",
                                                 "delivery_span_s", "delivered_msgs_per_s")}
                    run = self.record(scn_name, sysname, client, rnd, res, m, extra)
                    if run.get("delivered_msgs_per_s"):
                        self.estimates[key] = run["delivered_msgs_per_s"]
                except RunFailed as e:
                    self.fail(scn_name, sysname, client, rnd, e, srv)
        self.with_servers(sysname, scn_name, body)

    def s5_idle_target(self, sysname):
        """Idle connections this machine lets the system hold: a
        single-process server (ringmx, smtp-sink) and each load generator
        are bound by RLIMIT_NOFILE; Haraka has two worker processes;
        Postfix needs one smtpd process per connection."""
        active = SCENARIOS["S5"]["conns"]
        per_process = self.nofile - active - 500
        if sysname == "postfix":
            return min(self.args.idle_conns, self.args.postfix_idle)
        return max(0, min(self.args.idle_conns, per_process))

    def idle_round(self, scn_name, sysname, rnd):
        scn = SCENARIOS[scn_name]
        run_s = self.args.run_seconds
        idle = self.s5_idle_target(sysname)
        active = scn["conns"]
        procs = active + idle + 100 if sysname == "postfix" else None

        def body(srv, sink):
            tree = srv.tree()
            base = tree.sample()
            base_pss = tree.pss_kib()
            # the holder: one slow connection (1 message/s) plus the idle ones
            hold_s = S5_RAMP_MAX_S + run_s + CLIENT_SLACK_S
            hargv = self.bench_argv(srv.port, scn, conns=1, duration_s=hold_s, rate=1,
                                    extra=["--idle-conns", str(idle)])
            hout = self.out("holder")
            with open(hout, "wb") as o:
                holder = subprocess.Popen(hargv, stdin=subprocess.DEVNULL, stdout=o,
                                          stderr=subprocess.STDOUT)
            try:
                ramp_s = measure.wait_conns_held(srv.port, idle + 1, holder,
                                                 S5_RAMP_MAX_S, S5_RAMP_STALL_S, 0.5)
                time.sleep(1.0)
                held = measure.established_conns(srv.port)
                idle_sample = tree.sample()
                idle_pss = tree.pss_kib()
                self.warm_up(srv, scn)
                argv = self.bench_argv(srv.port, scn, duration_s=run_s)
                res, m = self.measure(srv, lambda: self.run_bench(argv, run_s))
                held_after = measure.established_conns(srv.port)
            finally:
                if holder.poll() is None:
                    holder.send_signal(signal.SIGTERM)
                    try:
                        holder.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        holder.kill()
                        holder.wait()
            growth = idle_sample.rss_kib - base.rss_kib
            pss_growth = idle_pss - base_pss
            idle_held = max(0, held - 1)
            extra = {"idle_requested": self.args.idle_conns, "idle_planned": idle,
                     "idle_held": idle_held, "held_after_active": held_after,
                     "ramp_s": ramp_s,
                     "rss_base_kib": base.rss_kib, "rss_idle_kib": idle_sample.rss_kib,
                     "pss_base_kib": base_pss, "pss_idle_kib": idle_pss,
                     "rss_per_idle_conn_kib": growth / idle_held if idle_held else None,
                     "pss_per_idle_conn_kib": pss_growth / idle_held if idle_held else None,
                     "procs_idle": idle_sample.procs}
            self.record(scn_name, sysname, "ringmx-bench", rnd, res, m, extra)
            if idle_held < idle * 0.98:
                log("  S5 %s: held %d of %d idle connections: %s"
                    % (sysname, idle_held, idle, read_text(hout, 400).strip()))

        try:
            self.with_servers(sysname, scn_name, body, procs=procs)
        except RunFailed as e:
            self.fail(scn_name, sysname, "ringmx-bench", rnd, e, None)

    def peak(self, sysname):
        """Closed-loop S1 msgs/s of the system with ringmx-bench: the median
        of this run's S1, or a short probe."""
        rates = [r["msgs_per_s"] for r in self.runs if r["scenario"] == "S1"
                 and r["system"] == sysname and r["client"] == "ringmx-bench"
                 and r.get("msgs_per_s")]
        if rates:
            return statistics.median(rates), "S1 median"
        if sysname not in self.peaks:
            scn = SCENARIOS["S1"]

            def probe(srv, sink):
                return self.run_bench(self.bench_argv(srv.port, scn, duration_s=3), 3)
            res = self.with_servers(sysname, "S1", probe)
            self.peaks[sysname] = res["msgs_per_s"]
        return self.peaks[sysname], "3 s probe"

    def latency_round(self, scn_name, sysname, rnd):
        scn = SCENARIOS[scn_name]
        run_s = self.args.run_seconds
        peak, source = self.peak(sysname)
        rate = max(1.0, peak * 0.5)

        def body(srv, sink):
            self.warm_up(srv, scn)
            argv = self.bench_argv(srv.port, scn, duration_s=run_s, rate=rate)
            metrics_before = metrics_after = None
            mport = getattr(srv, "metrics_port", None)
            if mport:
                metrics_before = measure.scrape(mport)
            res, m = self.measure(srv, lambda: self.run_bench(argv, run_s), sink)
            extra = {"peak_msgs_per_s": peak, "peak_from": source, "rate": rate}
            if mport:
                metrics_after = measure.scrape(mport)
                for name, key in (("ringmx_store_fsync_latency_seconds", "fsync"),
                                  ("ringmx_smtp_ack_latency_seconds", "server_ack")):
                    d = measure.histogram_delta(
                        measure.histogram_buckets(metrics_after, name),
                        measure.histogram_buckets(metrics_before, name))
                    for q, label in ((0.5, "p50"), (0.99, "p99"), (0.999, "p99_9")):
                        v = measure.histogram_quantile(q, d)
                        extra["%s_%s_us" % (key, label)] = v * 1e6 if v is not None else None
                    extra["%s_count" % key] = d[-1][1] if d else 0
                    extra["%s_buckets" % key] = [[b if b != float("inf") else "+Inf", c]
                                                 for b, c in d]
                    if key == "fsync":
                        v = scale.time_weighted_quantile(0.99, d)
                        extra["fsync_p99_tw_us"] = v * 1e6 if v is not None else None
            self.record(scn_name, sysname, "ringmx-bench", rnd, res, m, extra)

        try:
            self.with_servers(sysname, scn_name, body)
        except RunFailed as e:
            self.fail(scn_name, sysname, "ringmx-bench", rnd, e, None)

    def fail(self, scn_name, sysname, client, rnd, err, srv):
        text = str(err)
        if srv is not None:
            text += " | server log: " + srv.log_tail(800)
        log("  %s %s %s round %d FAILED: %s" % (scn_name, sysname, client, rnd, text))
        self.runs.append({"scenario": scn_name, "system": sysname, "client": client,
                          "round": rnd, "failed": text[:2000]})

    def tls_speed_round(self, rnd):
        """ringmx-tls-speed with the run's certificate kind: the linked
        wolfSSL's full handshakes per core (server CPU) and AES-GCM."""
        n = TLS_SPEED_HANDSHAKES_QUICK if self.args.quick else TLS_SPEED_HANDSHAKES
        argv = [self.tls_speed, "--handshakes", str(n), "--seconds",
                "0.3" if self.args.quick else "1"]
        if self.args.tls_cert == "rsa":
            argv.append("--rsa")
        out = self.out("tls-speed")
        rc, wall, cpu = spawn_wait(argv, 600, out)
        text = read_text(out)
        res = parse_tls_speed(text)
        res.update({"round": rnd, "exit_status": rc, "wall_s": wall, "cpu_s": cpu,
                    "certificate": self.args.tls_cert, "load1": measure.loadavg()[0]})
        if rc != 0 or res.get("handshakes_per_s") is None:
            res["failed"] = text[-600:]
            log("  ringmx-tls-speed round %d FAILED: %s" % (rnd, text[-300:]))
        else:
            log("  ringmx-tls-speed round %d: %.1f us per handshake = %.0f/s per core, "
                "AES-128-GCM %.2f GB/s, AES-256-GCM %.2f GB/s"
                % (rnd, res["server_us_per_handshake"], res["handshakes_per_s"],
                   res.get("aes128_gcm_gb_per_s") or 0, res.get("aes256_gcm_gb_per_s") or 0))
        self.tls_speed_runs.append(res)

    def run_all(self):
        handlers = {"S1": self.accept_round, "S2": self.accept_round,
                    "S3": self.accept_round, "S4": self.forward_round,
                    "S5": self.idle_round, "S6": self.latency_round,
                    "S6-roll": self.roll_round, "S6-source": self.source_latency_round,
                    "TLS-S1": self.accept_round, "TLS-S3": self.accept_round}
        if any(SCENARIOS[s].get("tls") for s in self.args.scenarios):
            log("ringmx-tls-speed: full TLS handshakes and AES-GCM per core (%s certificate)"
                % self.args.tls_cert)
            for rnd in range(1, self.args.rounds + 1):
                self.tls_speed_round(rnd)
        for group in scenario_groups(self.args.scenarios):
            names = {}
            for scn_name in group:
                names[scn_name] = [
                    s for s in self.args.systems
                    if (scn_name != "S4" or s in FORWARDING)
                    and (scn_name != "S5" or s in S5_SYSTEMS)
                    and (scn_name not in RINGMX_ONLY or s.startswith("ringmx"))
                    and (not SCENARIOS[scn_name].get("tls") or s in TLS_SYSTEMS)]
                log("%s: %s (%s)" % (scn_name, SCENARIOS[scn_name]["title"],
                                     ", ".join(names[scn_name])))
                if scn_name == "S5":
                    for s in names[scn_name]:
                        log("  S5 %s: %d idle connections" % (s, self.s5_idle_target(s)))
            for rnd in range(1, self.args.rounds + 1):
                for scn_name in group:
                    ns = names[scn_name]
                    k = (rnd - 1) % len(ns) if ns else 0
                    for sysname in ns[k:] + ns[:k]:
                        try:
                            handlers[scn_name](scn_name, sysname, rnd)
                        except systems.StartError as e:
                            self.fail(scn_name, sysname, "-", rnd, e, None)
        if self.args.scale:
            log("scale: ringmx durable, ringmx-bench, %d points per round: sizes %s at %d "
                "connections, open connections %s at 1 KiB, workers %s"
                % (len(scale.scale_points()), ",".join(scale.SCALE_SIZES), scale.SCALE_ACTIVE,
                   ",".join(str(c) for c in scale.SCALE_CONNS),
                   ",".join(str(w) for w in scale.SCALE_WORKERS)))
            for rnd in range(1, self.args.scale_rounds + 1):
                try:
                    scale.scale_round(self, rnd)
                except systems.StartError as e:
                    self.fail("SCALE", "ringmx-durable", "-", rnd, e, None)

    def roll_round(self, scn_name, sysname, rnd):
        try:
            scale.roll_round(self, scn_name, sysname, rnd)
        except RunFailed as e:
            self.fail(scn_name, sysname, "ringmx-bench", rnd, e, None)

    def source_latency_round(self, scn_name, sysname, rnd):
        try:
            scale.source_round(self, scn_name, sysname, rnd)
        except RunFailed as e:
            self.fail(scn_name, sysname, "smtp-source", rnd, e, None)


def scenario_groups(chosen):
    """The chosen scenarios in order, each TLS scenario joined to its plain
    twin when that is chosen too: a group runs round by round (round 1 of
    S1, of TLS-S1, round 2 of S1, ...), so the TLS/plain ratio compares
    runs made close together, under much the same load from other work."""
    groups = []
    for scn in chosen:
        if SCENARIOS[scn].get("plain") not in chosen:
            groups.append([scn])
    for scn in chosen:
        twin = SCENARIOS[scn].get("plain")
        if twin in chosen:
            next(g for g in groups if g[0] == twin).append(scn)
    return groups


def parse_tls_speed(text):
    """The figures ringmx-tls-speed prints (see bench/tls_speed.c)."""
    import re
    out = {}
    m = re.search(r"^wolfSSL (\S+), certificate (.+)$", text, re.M)
    if m:
        out["wolfssl"], out["certificate_text"] = m.group(1), m.group(2).strip()
    m = re.search(r"^full handshakes: (\d+) \((\S+) (\S+)\)", text, re.M)
    if m:
        out["handshakes"] = int(m.group(1))
        out["version"], out["cipher"] = m.group(2), m.group(3)
    m = re.search(r"server CPU per handshake: ([\d.]+) us = (\d+) handshakes/s per core", text)
    if m:
        out["server_us_per_handshake"] = float(m.group(1))
        out["handshakes_per_s"] = float(m.group(2))
    for bits in ("128", "256"):
        m = re.search(r"AES-%s-GCM: ([\d.]+) GB/s per core" % bits, text)
        if m:
            out["aes%s_gcm_gb_per_s" % bits] = float(m.group(1))
    return out


def ringmx_version(binary):
    try:
        cp = subprocess.run([binary, "--version"], capture_output=True, timeout=30)
        return cp.stdout.decode("utf-8", "replace").strip() if cp.returncode == 0 else None
    except OSError:
        return None


# ------------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="ringmx side by side with Postfix smtp-sink, Postfix smtpd and Haraka.")
    p.add_argument("--build-dir", default=os.path.join(REPO, "build"),
                   help="release build holding ringmx and bench/ringmx-bench "
                        "(built if missing; default build/)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per scenario (default 3)")
    p.add_argument("--ringmx-config", action="append", metavar="'KEY = VALUE'",
                   help="a config line added to every ringmx system (repeatable), "
                        "e.g. 'store_io = direct'")
    p.add_argument("--scenarios", default=DEFAULT_SCENARIOS,
                   help="comma-separated subset of %s (default all)" % DEFAULT_SCENARIOS)
    p.add_argument("--tls-cert", default="ecdsa", choices=systems.CERT_KINDS,
                   help="the servers' certificate in the TLS scenarios: ecdsa (P-256, the "
                        "default) or rsa (2048)")
    p.add_argument("--systems", default=",".join(systems.SYSTEMS),
                   help="comma-separated subset of " + ",".join(systems.SYSTEMS))
    p.add_argument("--clients", default="ringmx-bench,smtp-source",
                   help="comma-separated subset of ringmx-bench,smtp-source")
    p.add_argument("--run-seconds", type=float, default=6.0,
                   help="length of each measured run (default 6)")
    p.add_argument("--warmup-seconds", type=float, default=1.5,
                   help="unmeasured ringmx-bench run on each fresh instance before "
                        "S1-S3, S5 and S6 (default 1.5; 0: none)")
    p.add_argument("--idle-conns", type=int, default=50000,
                   help="S5 idle connections (default 50000; capped by the open-file limit)")
    p.add_argument("--postfix-idle", type=int, default=1000,
                   help="S5 idle connections for Postfix smtpd, one process each "
                        "(default 1000)")
    p.add_argument("--scale", action="store_true",
                   help="also run the scale family (message size, open connections, "
                        "workers; ringmx durable; about 5 min per round); with "
                        "--scenarios none only that. Results go to "
                        "bench/results/<date>-scale/ unless --results-dir is given")
    p.add_argument("--scale-rounds", type=int, default=1,
                   help="rounds of the scale family (default 1)")
    p.add_argument("--bench-threads", type=int, default=1,
                   help="ringmx-bench event loops (default 1)")
    p.add_argument("--results-dir", default=None,
                   help="where the .md, .json and .png go (default bench/results)")
    p.add_argument("--scratch-dir", default=None,
                   help="parent of the temporary directory for servers' data "
                        "(default: the system's temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 1 round, 2 s runs, 2000 idle connections")
    p.add_argument("--install-haraka-only", action="store_true",
                   help="npm install Haraka@3 into bench/.haraka and exit")
    p.add_argument("--from-json", metavar="FILE",
                   help="measure nothing: write the .md and charts again from the runs "
                        "in a results .json (into --results-dir)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = 1
        args.run_seconds = 2.0
        args.idle_conns = min(args.idle_conns, 2000)
        args.postfix_idle = min(args.postfix_idle, 200)
    args.scenarios = [{"S6-ROLL": "S6-roll", "S6-SOURCE": "S6-source"}.get(x, x)
                      for x in (s.strip().upper().replace(" ", "-")
                                for s in args.scenarios.split(",")) if x and x != "NONE"]
    if args.results_dir is None:
        args.results_dir = os.path.join(REPO, "bench", "results")
        if args.scale:
            args.results_dir = os.path.join(args.results_dir,
                                            time.strftime("%Y-%m-%d") + "-scale")
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.clients = [s.strip() for s in args.clients.split(",") if s.strip()]
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error("unknown scenario %s" % s)
    for s in args.systems:
        if s not in systems.SYSTEMS:
            p.error("unknown system %s" % s)
    for c in args.clients:
        if c not in ("ringmx-bench", "smtp-source"):
            p.error("unknown client %s" % c)
    if args.rounds < 1 or args.run_seconds <= 0:
        p.error("--rounds and --run-seconds must be positive")
    if "ringmx-durable" not in args.systems:
        log("note: without ringmx-durable there are no ratios and no targets")
    return args


def main(argv):
    args = parse_args(argv)
    if args.install_haraka_only:
        systems.haraka_install()
        return 0
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        meta = saved["meta"]
        for k in ("rounds", "run_seconds", "scenarios", "systems", "clients", "idle_conns",
                  "postfix_idle", "bench_threads", "quick", "tls_cert"):
            if k in meta["options"]:
                setattr(args, k, meta["options"][k])
        with tempfile.TemporaryDirectory(prefix="ringmx-compare-") as tmp:
            for p in results.write_all(args, saved["runs"], meta, SCENARIOS, scratch=tmp,
                                       write_json=False):
                log("wrote %s" % p)
        return 0

    def on_term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)

    hs = Harness(args)
    hs.source = results.source_state()
    hs.ensure_built()
    hs.check_tools()
    hs.ringmx_version = ringmx_version(hs.ringmx)
    hs.nofile = systems.raise_nofile()
    scratch_parent = args.scratch_dir or tempfile.gettempdir()
    os.makedirs(scratch_parent, exist_ok=True)
    hs.scratch = tempfile.mkdtemp(prefix="ringmx-compare-", dir=scratch_parent)
    os.chmod(hs.scratch, 0o755)  # smtp-sink and Postfix daemons run as other users
    started = time.time()
    load_start = measure.loadavg()
    log("scratch %s, open-file limit %d, load %.2f %.2f %.2f"
        % (hs.scratch, hs.nofile, *load_start))
    interrupted = False
    try:
        hs.run_all()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping the servers, writing what was measured")
    finally:
        systems.stop_all()
    meta = results.environment(args, hs, started, load_start, measure.loadavg(), interrupted)
    paths = results.write_all(args, hs.runs, meta, SCENARIOS, scratch=hs.scratch)
    for p in paths:
        log("wrote %s" % p)
    if not args.keep:
        subprocess.run(["rm", "-rf", "--one-file-system", hs.scratch])
    else:
        log("kept %s" % hs.scratch)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
