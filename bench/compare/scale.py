"""scale.py - issue 14 targets 4 and 5 for compare.py: latency around the
commit (segment rollovers, a client with one command per round trip) and
how ringmx's cost grows with message size, open connections and workers.

    python3 bench/compare/compare.py --scale            (with the scenarios)
    python3 bench/compare/compare.py --scale --scenarios none   (only these)

Latency, ringmx systems only:
  S6-roll   S6 (open loop at 50% of the S1 peak, 100 connections, 1 KiB)
            with segment_size = 8M, so segments roll over several times a
            second. /metrics is read every METRICS_POLL_S: an interval in
            which ringmx_store_segments rose (the gauge is refreshed on the
            workers' 100 ms tick), and the one after it, form a rollover
            window; the server's ack histogram counted inside the windows
            gives the ack p99 while a segment rolls over.
  S6-source Postfix smtp-source (closed loop, one command per round trip,
            100 sessions, 1 KiB): ringmx's own ack and commit histograms.

Scale (--scale, ringmx durable, ringmx-bench, one bounded run per point):
  sizes 1 KiB, 10 KiB, 100 KiB, 1 MiB at 100 connections; open connections
  100, 1,000, 10,000, 18,000 (idle sessions held by a second ringmx-bench
  process with --idle-conns, plus 100 active ones) at 1 KiB; each with
  workers = 1 and workers = 2.

The time-weighted quantile of the commit duration weights each commit by
its length: it is the duration that a moment picked at random inside a
commit sees at most, in 99% of the time spent committing; a message that
arrives while a commit is in flight waits for a commit of that distribution.
"""

import os
import signal
import statistics
import subprocess
import threading
import time

import measure

METRICS_POLL_S = 0.05
ROLL_SEGMENT_SIZE = "8M"
ROLL_CONFIG = ["segment_size = %s" % ROLL_SEGMENT_SIZE, "max_message_size = 1M",
               "max_recipients = 10"]
SCALE_SIZES = ("1k", "10k", "100k", "1m")
SCALE_CONNS = (100, 1000, 10000, 18000)
SCALE_ACTIVE = 100
SCALE_WORKERS = (1, 2)
IDLE_RAMP_MAX_S = 90
IDLE_RAMP_STALL_S = 6
FD_RESERVE = 400          # descriptors a process keeps for everything else


# ------------------------------------------------------------ histograms

def time_weighted_quantile(q, buckets):
    """The q-quantile (0..1) of cumulative (bound, count) buckets, each
    observation weighted by its own duration (taken as its bucket's
    midpoint; the +Inf bucket as the last finite bound), interpolated
    linearly inside the bucket that holds it. None when empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    weighted = []
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        n = count - prev_count
        rep = prev_bound if bound == float("inf") else (prev_bound + bound) / 2.0
        weighted.append((prev_bound, bound, n * rep))
        prev_bound, prev_count = (bound if bound != float("inf") else prev_bound), count
    total = sum(w for _, _, w in weighted)
    if total <= 0:
        return None
    rank = q * total
    acc = 0.0
    for lo, hi, w in weighted:
        if w > 0 and acc + w >= rank:
            if hi == float("inf"):
                return lo
            return lo + (hi - lo) * (rank - acc) / w
        acc += w
    return weighted[-1][0]


def gauge(text, name):
    """The value of an unlabelled gauge in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def quantiles(buckets, prefix, levels=((0.5, "p50"), (0.99, "p99"), (0.999, "p99_9"))):
    out = {}
    for q, label in levels:
        v = measure.histogram_quantile(q, buckets)
        out["%s_%s_us" % (prefix, label)] = v * 1e6 if v is not None else None
    out["%s_count" % prefix] = buckets[-1][1] if buckets else 0
    return out


def _add(a, b):
    if not a:
        return list(b)
    d = dict(b)
    return [(bound, c + d.get(bound, 0.0)) for bound, c in a]


class MetricsWatch:
    """Reads /metrics every METRICS_POLL_S in a thread while a run goes on,
    keeping the segment gauge and the ack and commit histograms of each
    sample; rollovers() splits the run into rollover windows and the rest."""

    ACK = "ringmx_smtp_ack_latency_seconds"
    COMMIT = "ringmx_store_fsync_latency_seconds"
    SEGMENTS = "ringmx_store_segments"

    def __init__(self, port):
        self.port = port
        self.samples = []          # (monotonic s, segments, ack buckets, commit buckets)
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                text = measure.scrape(self.port, timeout_s=2.0)
            except OSError:
                self.errors += 1
            else:
                self.samples.append((t, gauge(text, self.SEGMENTS),
                                     measure.histogram_buckets(text, self.ACK),
                                     measure.histogram_buckets(text, self.COMMIT)))
            self._stop.wait(max(0.0, METRICS_POLL_S - (time.monotonic() - t)))

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def rollovers(self):
        """Rollover windows against the rest of the run: how many rises of
        the segment gauge, the windows' share of the time, and the server's
        ack latency (p50/p99/p99.9) inside and outside them."""
        s = self.samples
        if len(s) < 3:
            return {"roll_samples": len(s)}
        marked = [False] * len(s)          # interval (i-1, i] is a rollover window
        rises = 0
        for i in range(1, len(s)):
            if s[i][1] is not None and s[i - 1][1] is not None and s[i][1] > s[i - 1][1]:
                rises += 1
                marked[i] = True
                if i + 1 < len(s):
                    marked[i + 1] = True   # commits in flight across the switch
        inside, outside = [], []
        t_in = t_all = 0.0
        for i in range(1, len(s)):
            d = measure.histogram_delta(s[i][2], s[i - 1][2])
            dt = s[i][0] - s[i - 1][0]
            t_all += dt
            if marked[i]:
                inside = _add(inside, d)
                t_in += dt
            else:
                outside = _add(outside, d)
        out = {"roll_rises": rises, "roll_samples": len(s),
               "roll_time_share": t_in / t_all if t_all > 0 else None,
               "roll_scrape_errors": self.errors}
        out.update(quantiles(inside, "roll_ack"))
        out.update(quantiles(outside, "steady_ack"))
        return out


def commit_figures(before_text, after_text):
    """Ack and commit quantiles between two scrapes, with the commit's
    time-weighted p99."""
    out = {}
    for name, key in ((MetricsWatch.COMMIT, "fsync"), (MetricsWatch.ACK, "server_ack")):
        d = measure.histogram_delta(measure.histogram_buckets(after_text, name),
                                    measure.histogram_buckets(before_text, name))
        out.update(quantiles(d, key))
        out["%s_buckets" % key] = [[b if b != float("inf") else "+Inf", c] for b, c in d]
        if key == "fsync":
            v = time_weighted_quantile(0.99, d)
            out["fsync_p99_tw_us"] = v * 1e6 if v is not None else None
    return out


# ------------------------------------------------------------ runs

def roll_round(h, scn_name, sysname, rnd):
    """S6-roll: S6 with small segments, rollover windows from /metrics."""
    scn = h.scenarios[scn_name]
    run_s = h.args.run_seconds
    peak, source = h.peak(sysname)
    rate = max(1.0, peak * 0.5)

    def body(srv, sink):
        h.warm_up(srv, scn)
        argv = h.bench_argv(srv.port, scn, duration_s=run_s, rate=rate)
        before = measure.scrape(srv.metrics_port)
        watch = MetricsWatch(srv.metrics_port).start()
        try:
            res, m = h.measure(srv, lambda: h.run_bench(argv, run_s))
        finally:
            watch.stop()
        extra = {"peak_msgs_per_s": peak, "peak_from": source, "rate": rate,
                 "segment_size": ROLL_SEGMENT_SIZE}
        extra.update(commit_figures(before, measure.scrape(srv.metrics_port)))
        extra.update(watch.rollovers())
        run = h.record(scn_name, sysname, "ringmx-bench", rnd, res, m, extra)
        h.log("  %s %s: %s rollovers, windows %.0f%% of the time, server ack p99 %s us "
              "in them, %s us outside" % (scn_name, sysname, run.get("roll_rises"),
                                         100.0 * (run.get("roll_time_share") or 0),
                                         _fmt(run.get("roll_ack_p99_us")),
                                         _fmt(run.get("steady_ack_p99_us"))))

    h.with_servers(sysname, scn_name, body, extra_lines=ROLL_CONFIG)


def source_round(h, scn_name, sysname, rnd):
    """S6-source: smtp-source, one command per round trip; ringmx's ack and
    commit histograms over the run."""
    scn = h.scenarios[scn_name]
    run_s = h.args.run_seconds

    def body(srv, sink):
        h.warm_up(srv, scn)
        key = (scn_name, sysname, "smtp-source")
        n = h.plan_count(key, run_s, lambda k: h.run_source(srv.port, scn, k,
                                                            run_s * 4)["msgs_per_s"])
        before = measure.scrape(srv.metrics_port)
        res, m = h.measure(srv, lambda: h.run_source(srv.port, scn, n, run_s))
        extra = commit_figures(before, measure.scrape(srv.metrics_port))
        run = h.record(scn_name, sysname, "smtp-source", rnd, res, m, extra)
        if run.get("msgs_per_s"):
            h.estimates[key] = run["msgs_per_s"]

    h.with_servers(sysname, scn_name, body)


def scale_points():
    """(label, size, open connections, workers): sizes at 100 connections,
    then connection counts at 1 KiB, for each worker count."""
    pts = []
    for w in SCALE_WORKERS:
        for size in SCALE_SIZES:
            pts.append(("size", size, SCALE_ACTIVE, w))
        for conns in SCALE_CONNS[1:]:
            pts.append(("conns", "1k", conns, w))
    return pts


def nofile_hard():
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def scale_round(h, rnd, only=None):
    """One run per scale point on a fresh ringmx durable each."""
    run_s = h.args.run_seconds
    limit = nofile_hard()
    for kind, size, conns, workers in scale_points():
        if only and (size, conns, workers) not in only:
            continue
        idle = max(0, conns - SCALE_ACTIVE)
        name = "SCALE-%s-c%d-w%d" % (size, conns, workers)
        scn = {"size": size, "conns": SCALE_ACTIVE, "persistent": True}
        if idle + SCALE_ACTIVE + FD_RESERVE > limit:
            h.fail(name, "ringmx-durable", "ringmx-bench", rnd,
                   "open-file hard limit %d below %d connections" % (limit, conns), None)
            continue

        def body(srv, sink, scn=scn, idle=idle, name=name, size=size, conns=conns,
                 workers=workers, kind=kind):
            holder = None
            held = 0
            ramp_s = 0.0
            try:
                if idle:
                    hold_s = IDLE_RAMP_MAX_S + run_s + 120
                    hargv = h.bench_argv(srv.port, dict(scn, size="1k"), conns=1,
                                         duration_s=hold_s, rate=1,
                                         extra=["--idle-conns", str(idle)])
                    hout = h.out("holder")
                    with open(hout, "wb") as o:
                        holder = subprocess.Popen(hargv, stdin=subprocess.DEVNULL, stdout=o,
                                                  stderr=subprocess.STDOUT)
                    ramp_s = measure.wait_conns_held(srv.port, idle + 1, holder,
                                                     IDLE_RAMP_MAX_S, IDLE_RAMP_STALL_S, 0.3)
                    held = max(0, measure.established_conns(srv.port) - 1)
                h.warm_up(srv, scn)
                argv = h.bench_argv(srv.port, scn, duration_s=run_s)
                res, m = h.measure(srv, lambda: h.run_bench(argv, run_s))
            finally:
                if holder is not None and holder.poll() is None:
                    holder.send_signal(signal.SIGTERM)
                    try:
                        holder.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        holder.kill()
                        holder.wait()
            extra = {"scale_kind": kind, "size": size, "open_conns": conns,
                     "idle_held": held, "idle_planned": idle, "ramp_s": ramp_s,
                     "workers": workers,
                     "mb_per_s": res.get("mb_per_s")}
            h.record(name, "ringmx-durable", "ringmx-bench", rnd, res, m, extra)

        try:
            h.with_servers("ringmx-durable", "S1", body, workers=workers)
        except h.RunFailed as e:
            h.fail(name, "ringmx-durable", "ringmx-bench", rnd, e, None)


def _fmt(v, f="%.0f"):
    return "-" if v is None else f % v


# ------------------------------------------------------------ results

SIZE_BYTES = {"1k": 1024, "10k": 10240, "100k": 102400, "1m": 1048576}


def scale_table(runs):
    """Medians per scale point: [(kind, size, conns, workers, figures)]."""
    cells = {}
    for r in runs:
        if not r["scenario"].startswith("SCALE-") or r.get("failed") or not r.get("messages"):
            continue
        cells.setdefault((r["scale_kind"], r["size"], r["open_conns"], r["workers"]),
                         []).append(r)
    out = []
    for kind, size, conns, workers in scale_points():
        rs = cells.get((kind, size, conns, workers), [])

        def med(f):
            v = [r.get(f) for r in rs if r.get(f) is not None]
            return statistics.median(v) if v else None
        out.append((kind, size, conns, workers, {
            "runs": len(rs), "msgs_per_s": med("msgs_per_s"), "mb_per_s": med("mb_per_s"),
            "cpu_us_per_msg": med("server_cpu_us_per_msg"),
            "cpu_us_per_kib": (med("server_cpu_us_per_msg") / (SIZE_BYTES[size] / 1024.0)
                               if med("server_cpu_us_per_msg") else None),
            "server_cpus": (med("server_cpu_s") / med("elapsed_s")
                            if med("server_cpu_s") and med("elapsed_s") else None),
            "iowq_share": med("iowq_cpu_share"), "commit_p99_us": med("commit_p99_us"),
            "idle_held": med("idle_held"), "rss_max_mib": (med("rss_max_kib") or 0) / 1024.0,
            "ack_p99_us": med("ack_p99"), "load1": med("load1"),
            "others_share": med("others_cpu_share")}))
    return out


def scale_markdown(runs):
    for r in runs:
        if r["scenario"].startswith("SCALE-") and r.get("latency_ack_us"):
            r["ack_p99"] = r["latency_ack_us"].get("p99")
    rows = scale_table(runs)
    md = ["## How cost grows (ringmx durable, ringmx-bench, closed loop, pipelining)", "",
          "One bounded run per point and round on a fresh instance; 100 active "
          "connections, the extra open connections are idle sessions (after EHLO) held by "
          "a second ringmx-bench process. Each column is the median over the rounds. "
          "Server CPU is the whole server process (io-wq included); \"server CPUs busy\" "
          "is its CPU seconds per second of run; \"other work's CPU\" is the share of the "
          "machine's CPUs used by everything but the server and the bench (other work on "
          "a shared machine): where it is high, the rate is not the server's own limit.",
          ""]
    for kind, title in (("size", "Message size (100 connections)"),
                        ("conns", "Open connections (1 KiB, 100 of them active)")):
        md += ["### " + title, "",
               "| workers | size | open conns | msgs/s | MB/s | server CPU us/msg | "
               "us per KiB | server CPUs busy | io-wq share | commit p99 ms | "
               "ack p99 ms | RSS max MiB | other work's CPU |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for k, size, conns, workers, f in rows:
            if k != kind and not (kind == "conns" and size == "1k" and conns == SCALE_ACTIVE):
                continue
            if f["runs"] == 0:
                md.append("| %d | %s | %d | failed | | | | | | | | | |" % (workers, size, conns))
                continue
            md.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %s |" % (
                workers, size, "{:,}".format(conns)
                + ("" if not f["idle_held"] or f["idle_held"] >= conns - SCALE_ACTIVE
                   else " (held %d)" % f["idle_held"]),
                _fmt(f["msgs_per_s"]), _fmt(f["mb_per_s"], "%.1f"),
                _fmt(f["cpu_us_per_msg"], "%.1f"), _fmt(f["cpu_us_per_kib"], "%.2f"),
                _fmt(f["server_cpus"], "%.2f"),
                _fmt(None if f["iowq_share"] is None else 100 * f["iowq_share"], "%.0f%%"),
                _fmt(None if f["commit_p99_us"] is None else f["commit_p99_us"] / 1000,
                     "%.1f"),
                _fmt(None if f["ack_p99_us"] is None else f["ack_p99_us"] / 1000, "%.1f"),
                f["rss_max_mib"],
                _fmt(None if f["others_share"] is None else 100 * f["others_share"], "%.0f%%")))
        md.append("")
    return md, rows


def latency_markdown(runs):
    """S6-roll and S6-source tables (medians over rounds)."""
    md = []

    def med(rs, f, sub=None):
        v = [(r.get(f) or {}).get(sub) if sub else r.get(f) for r in rs]
        v = [x for x in v if x is not None]
        return statistics.median(v) if v else None
    roll = [r for r in runs if r["scenario"] == "S6-roll" and not r.get("failed")]
    src = [r for r in runs if r["scenario"] == "S6-source" and not r.get("failed")]
    if roll:
        md += ["## Ack latency while segments roll over (S6-roll)", "",
               "S6's open loop at 50%% of the S1 peak with `segment_size = %s`; a rollover "
               "window is a %d ms /metrics interval in which `ringmx_store_segments` rose, "
               "and the next one. Server-side figures come from ringmx's histograms "
               "(buckets 1, 2.5, 5, 10, 25 ms ...), the client's from ringmx-bench."
               % (ROLL_SEGMENT_SIZE, METRICS_POLL_S * 1000), "",
               "| system | rollovers | windows' time share | bench ack p50 / p99 / p99.9 / max "
               "ms | commit p99 ms (time-weighted) | server ack p99 in windows ms | "
               "outside ms |", "|---|---|---|---|---|---|---|"]
        for system in sorted({r["system"] for r in roll}):
            rs = [r for r in roll if r["system"] == system]
            md.append("| %s | %s | %s | %s / %s / %s / %s | %s (%s) | %s | %s |" % (
                system, _fmt(med(rs, "roll_rises")),
                _fmt(100 * (med(rs, "roll_time_share") or 0), "%.0f%%"),
                *[_fmt(None if med(rs, "latency_ack_us", q) is None
                       else med(rs, "latency_ack_us", q) / 1000, "%.2f")
                  for q in ("p50", "p99", "p99_9", "max")],
                _ms(med(rs, "fsync_p99_us")), _ms(med(rs, "fsync_p99_tw_us")),
                _ms(med(rs, "roll_ack_p99_us")), _ms(med(rs, "steady_ack_p99_us"))))
        md.append("")
    if src:
        md += ["## One command per round trip (S6-source, smtp-source, 100 sessions)", "",
               "| system | msgs/s | server ack p50 / p99 ms | commit p50 / p99 ms | "
               "commit p99 time-weighted ms | commits |", "|---|---|---|---|---|---|"]
        for system in sorted({r["system"] for r in src}):
            rs = [r for r in src if r["system"] == system]
            md.append("| %s | %s | %s / %s | %s / %s | %s | %s |" % (
                system, _fmt(med(rs, "msgs_per_s")), _ms(med(rs, "server_ack_p50_us")),
                _ms(med(rs, "server_ack_p99_us")), _ms(med(rs, "fsync_p50_us")),
                _ms(med(rs, "fsync_p99_us")), _ms(med(rs, "fsync_p99_tw_us")),
                _fmt(med(rs, "fsync_count"))))
        md.append("")
    return md


def _ms(us):
    return "-" if us is None else "%.2f" % (us / 1000.0)


def write_gnuplot(out_dir, rows):
    """scale.png: msgs/s and CPU per message against size and connections,
    one line per worker count; skipped without gnuplot."""
    dat = os.path.join(out_dir, "scale.dat")
    with open(dat, "w") as f:
        for kind in ("size", "conns"):
            for w in SCALE_WORKERS:
                f.write("# %s workers=%d\n" % (kind, w))
                for k, size, conns, workers, fig in rows:
                    inkind = k == kind or (kind == "conns" and size == "1k"
                                           and conns == SCALE_ACTIVE)
                    if not inkind or workers != w or not fig["msgs_per_s"]:
                        continue
                    x = SIZE_BYTES[size] / 1024.0 if kind == "size" else conns
                    f.write("%g %g %g\n" % (x, fig["msgs_per_s"], fig["cpu_us_per_msg"] or 0))
                f.write("\n\n")
    gp = os.path.join(out_dir, "scale.gp")
    with open(gp, "w") as f:
        f.write("""set terminal pngcairo size 1200,800 font ",10"
set output "scale.png"
set multiplot layout 2,2
set logscale x
set grid
set key left top
set xlabel "message size (KiB)"
set ylabel "msgs/s"
set logscale y
plot "scale.dat" index 0 using 1:2 with linespoints title "1 worker", \\
     "" index 1 using 1:2 with linespoints title "2 workers"
set ylabel "server CPU us/msg"
plot "scale.dat" index 0 using 1:3 with linespoints title "1 worker", \\
     "" index 1 using 1:3 with linespoints title "2 workers"
unset logscale y
set yrange [0:*]
set key right bottom
set xlabel "open connections (100 active)"
set ylabel "msgs/s"
plot "scale.dat" index 2 using 1:2 with linespoints title "1 worker", \\
     "" index 3 using 1:2 with linespoints title "2 workers"
set ylabel "server CPU us/msg"
plot "scale.dat" index 2 using 1:3 with linespoints title "1 worker", \\
     "" index 3 using 1:3 with linespoints title "2 workers"
unset multiplot
""")
    try:
        subprocess.run(["gnuplot", "scale.gp"], cwd=out_dir, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        pass
