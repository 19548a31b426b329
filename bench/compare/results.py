"""Turns the comparison's runs into results: medians per scenario, system
and client; ratios to ringmx (durable); the issue's targets as PASS/FAIL;
then bench/results/<date>-<host>.md and .json, and PNG charts drawn by
gnuplot from bench/compare/plot.gp.

Every run is kept in the JSON as measured, failed ones included; medians
take the runs that produced a rate. A target whose inputs were not
measured says NOT MEASURED, never PASS.
"""

import json
import os
import platform
import socket
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

BASE = "ringmx-durable"
CLIENTS = ("ringmx-bench", "smtp-source")
HARAKA = ("haraka-forward", "haraka-discard")
LATENCY_LEVELS = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999))


def _cmd(argv):
    try:
        cp = subprocess.run(argv, capture_output=True, timeout=30, cwd=REPO)
        return cp.stdout.decode("utf-8", "replace").strip() if cp.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def source_state():
    """(commit, whether tracked files differ from it): read before the run,
    since the tree may move on while it lasts."""
    dirty = _cmd(["git", "status", "--porcelain", "--untracked-files=no"])
    return _cmd(["git", "rev-parse", "--short=12", "HEAD"]), bool(dirty)


def environment(args, hs, started, load_start, load_end, interrupted):
    import systems
    loads = hs.loads or [load_start[0]]
    commit, dirty = hs.source
    return {
        "date": time.strftime("%Y-%m-%d", time.localtime(started)),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "mem_gib": _mem_gib(),
        "kernel": platform.release(),
        "ringmx_commit": commit,
        "ringmx_tree_modified": dirty,
        "postfix": _cmd(["dpkg-query", "-W", "-f=${Version}", "postfix"]),
        "haraka": systems.haraka_version(),
        "node": _cmd(["node", "--version"]),
        "load_start": load_start,
        "load_end": load_end,
        "load1_per_run": {"min": min(loads), "median": statistics.median(loads),
                          "max": max(loads)},
        "others_cpu_share_per_run": _spread(hs.others),
        "nofile_limit": hs.nofile,
        "interrupted": interrupted,
        "ringmx_version": hs.ringmx_version,
        "tls_speed": hs.tls_speed_runs,
        "options": {"rounds": args.rounds, "run_seconds": args.run_seconds,
                    "scenarios": args.scenarios, "systems": args.systems,
                    "clients": args.clients, "idle_conns": args.idle_conns,
                    "postfix_idle": args.postfix_idle, "bench_threads": args.bench_threads,
                    "warmup_seconds": args.warmup_seconds,
                    "quick": args.quick, "tls_cert": args.tls_cert},
    }


def _spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


# ------------------------------------------------------------------ medians

def _med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rate_of(run):
    if run["scenario"] == "S4":
        return run.get("delivered_msgs_per_s")
    return run.get("msgs_per_s")


def cells(runs):
    """{(scenario, system, client): [runs that produced a rate]} and the
    failed ones separately."""
    ok, failed = {}, {}
    for r in runs:
        key = (r["scenario"], r["system"], r["client"])
        if r.get("failed") or not rate_of(r):
            failed.setdefault(key, []).append(r)
        else:
            ok.setdefault(key, []).append(r)
    return ok, failed


def summarize(runs):
    """Medians per cell."""
    ok, failed = cells(runs)
    out = {}
    for key, rs in ok.items():
        s = {"runs": len(rs), "failed_runs": len(failed.get(key, [])),
             "rates": [rate_of(r) for r in rs],
             "rate": _med(rate_of(r) for r in rs),
             "errors": sum((r.get("errors") or 0) for r in rs),
             "server_cpu_us_per_msg": _med(r.get("server_cpu_us_per_msg") for r in rs),
             "client_cpu_us_per_msg": _med(r.get("client_cpu_us_per_msg") for r in rs),
             "rss_max_kib": _med(r.get("rss_max_kib") for r in rs),
             "pss_end_kib": _med(r.get("pss_end_kib") for r in rs),
             "procs_max": _med(r.get("procs_max") for r in rs),
             "others_cpu_share": _med(r.get("others_cpu_share") for r in rs)}
        scn = key[0]
        if scn == "S4":
            s["accept_rate"] = _med(r.get("msgs_per_s") for r in rs)
            s["all_delivered"] = all(r.get("delivered_all") for r in rs)
        if scn == "S5":
            for f in ("idle_planned", "idle_held", "rss_base_kib", "rss_idle_kib",
                      "rss_per_idle_conn_kib", "pss_per_idle_conn_kib", "ramp_s",
                      "procs_idle"):
                s[f] = _med(r.get(f) for r in rs)
        if scn in ("S6", "S6-roll"):
            s["rate_target"] = _med(r.get("rate") for r in rs)
            s["peak"] = _med(r.get("peak_msgs_per_s") for r in rs)
            s["peak_from"] = rs[0].get("peak_from")
            s["schedule_kept"] = all(r.get("schedule_kept") for r in rs)
            s["schedule_late"] = sum((r.get("schedule_late") or 0) for r in rs)
            for lat in ("latency_ack_us", "latency_txn_us"):
                s[lat] = {lvl: _med((r.get(lat) or {}).get(lvl) for r in rs)
                          for lvl in ("p50", "p90", "p99", "p99_9", "max")}
            for f in ("fsync_p50_us", "fsync_p99_us", "fsync_p99_9_us", "server_ack_p99_us",
                      "server_ack_p50_us", "fsync_count", "fsync_p99_tw_us"):
                s[f] = _med(r.get(f) for r in rs)
            # the run whose ack p99 is the median, for the CDF
            mid = sorted(rs, key=lambda r: (r.get("latency_ack_us") or {}).get("p99") or 0)
            s["cdf_run"] = mid[len(mid) // 2].get("latency_ack_us")
        if scn.startswith("TLS-"):
            s["tls_handshakes_per_s"] = _med(r.get("tls_handshakes_per_s") for r in rs)
            s["tls_handshakes"] = _med(r.get("tls_handshakes") for r in rs)
            s["tls_resumed"] = sum((r.get("tls_resumed") or 0) for r in rs)
            s["tls_failures"] = sum((r.get("tls_failures") or 0) for r in rs)
            s["tls_version"] = rs[0].get("tls_version")
            s["tls_cipher"] = rs[0].get("tls_cipher")
            s["latency_handshake_us"] = {
                lvl: _med((r.get("latency_handshake_us") or {}).get(lvl) for r in rs)
                for lvl in ("p50", "p90", "p99", "max")}
        out[key] = s
    for key, rs in failed.items():
        if key not in out:
            out[key] = {"runs": 0, "failed_runs": len(rs), "rate": None,
                        "failure": rs[0].get("failed") or "no messages"}
    return out


# ------------------------------------------------------------------ targets

def _get(summary, scn, system, client, field="rate"):
    s = summary.get((scn, system, client))
    return None if s is None else s.get(field)


def _target(text, ok, measured):
    if ok is None:
        return {"target": text, "result": "NOT MEASURED", "measured": measured}
    return {"target": text, "result": "PASS" if ok else "FAIL", "measured": measured}


def tls_speed_summary(runs):
    """Medians of the ringmx-tls-speed rounds that produced figures."""
    ok = [r for r in runs or [] if not r.get("failed")]
    if not ok:
        return None
    out = {"rounds": len(ok), "failed_rounds": len(runs) - len(ok),
           "wolfssl": ok[0].get("wolfssl"), "certificate": ok[0].get("certificate_text"),
           "version": ok[0].get("version"), "cipher": ok[0].get("cipher")}
    for f in ("server_us_per_handshake", "handshakes_per_s", "aes128_gcm_gb_per_s",
              "aes256_gcm_gb_per_s"):
        out[f] = _med(r.get(f) for r in ok)
        out[f + "_range"] = [min(r.get(f) or 0 for r in ok), max(r.get(f) or 0 for r in ok)]
    return out


def tls_targets(speed):
    """The issue's per-core TLS targets, from ringmx-tls-speed."""
    hs = None if speed is None else speed.get("handshakes_per_s")
    gcm = None if speed is None else speed.get("aes128_gcm_gb_per_s")
    return [
        _target("TLS: >= 3,000 full TLS 1.3 handshakes/s per core (ringmx-tls-speed, "
                "server CPU)", None if hs is None else hs >= 3000,
                "missing" if hs is None else "%.0f/s (%.1f us each, %s)"
                % (hs, speed["server_us_per_handshake"], speed.get("certificate"))),
        _target("TLS: >= 2 GB/s AES-GCM per core (ringmx-tls-speed, AES-128-GCM)",
                None if gcm is None else gcm >= 2.0,
                "missing" if gcm is None else "%.2f GB/s" % gcm),
    ]


def targets(summary):
    out = []
    for scn in ("S1", "S2"):
        for client in CLIENTS:
            base = _get(summary, scn, BASE, client)
            for other, factor, label in (("postfix", 20, "Postfix smtpd"),
                                         ("haraka", 20, "Haraka"),
                                         ("smtp-sink", 2, "smtp-sink")):
                if other == "haraka":
                    cand = [(h, _get(summary, scn, h, client)) for h in HARAKA]
                    cand = [(h, v) for h, v in cand if v]
                    name, val = max(cand, key=lambda x: x[1]) if cand else ("haraka", None)
                else:
                    name, val = other, _get(summary, scn, other, client)
                text = "%s (%s): ringmx durable >= %dx %s" % (scn, client, factor, label)
                if base and val:
                    out.append(_target(text, base >= factor * val,
                                       "%.0f vs %.0f msgs/s (%s): %.1fx"
                                       % (base, val, name, base / val)))
                else:
                    out.append(_target(text, None, "missing"))
    for client in CLIENTS:
        base = _get(summary, "S4", BASE, client)
        pf = _get(summary, "S4", "postfix", client)
        text = "S4 (%s): ringmx end-to-end delivered rate >= 5x Postfix's" % client
        if base and pf:
            out.append(_target(text, base >= 5 * pf, "%.0f vs %.0f msgs/s: %.1fx"
                               % (base, pf, base / pf)))
        else:
            out.append(_target(text, None, "missing"))
    # issue 14 target 1: forwarding keeps pace with acceptance, same run
    s4 = _get(summary, "S4", BASE, "ringmx-bench")
    s1 = _get(summary, "S1", BASE, "ringmx-bench")
    text = "S4 (ringmx-bench): ringmx's delivered rate >= 90% of its S1 accepted rate"
    out.append(_target(text, s4 >= 0.9 * s1, "%.0f vs %.0f msgs/s: %.0f%%"
                       % (s4, s1, 100.0 * s4 / s1)) if s4 and s1
               else _target(text, None, "missing"))
    per = _get(summary, "S5", BASE, "ringmx-bench", "rss_per_idle_conn_kib")
    held = _get(summary, "S5", BASE, "ringmx-bench", "idle_held")
    text = "S5: ringmx <= 4 KiB RSS per idle connection"
    out.append(_target(text, None if per is None else per <= 4.0,
                       "missing" if per is None else "%.2f KiB per connection (%d held)"
                       % (per, held or 0)))
    s5 = _get(summary, "S5", BASE, "ringmx-bench")
    s1 = _get(summary, "S1", BASE, "ringmx-bench")
    text = "S5: ringmx's 1,000 active connections get >= 80% of its S1 rate"
    if s5 and s1:
        out.append(_target(text, s5 >= 0.8 * s1, "%.0f vs %.0f msgs/s: %.0f%%"
                           % (s5, s1, 100.0 * s5 / s1)))
    else:
        out.append(_target(text, None, "missing"))
    # issue 14 target 4: the wait for the 250 against the commit it waits for;
    # a message that arrives during a commit waits for it and then its own, so
    # the commit's p99 is weighted by time (scale.time_weighted_quantile)
    for scn in ("S6", "S6-roll"):
        s6 = summary.get((scn, BASE, "ringmx-bench"))
        text = ("%s: ringmx p99 ack <= 2x the time-weighted p99 commit duration + 1 ms"
                % scn)
        if s6 and s6.get("latency_ack_us", {}).get("p99") and s6.get("fsync_p99_tw_us"):
            ack = s6["latency_ack_us"]
            tw = s6["fsync_p99_tw_us"]
            out.append(_target(text, ack["p99"] <= 2 * tw + 1000.0,
                               "p99 ack %.0f us (p50 %s, p99.9 %s, max %s), commit p99 "
                               "%.0f us time-weighted (%s by count; /metrics buckets), "
                               "limit %.0f us"
                               % (ack["p99"], _n(ack.get("p50")), _n(ack.get("p99_9")),
                                  _n(ack.get("max")), tw, _n(s6.get("fsync_p99_us")),
                                  2 * tw + 1000.0)))
        elif scn == "S6" or s6:
            out.append(_target(text, None, "missing"))
    for client in CLIENTS:
        base = _get(summary, "S1", BASE, client, "server_cpu_us_per_msg")
        sink = _get(summary, "S1", "smtp-sink", client, "server_cpu_us_per_msg")
        text = "S1 (%s): ringmx server CPU per message <= half of smtp-sink's" % client
        if base and sink:
            out.append(_target(text, base <= 0.5 * sink, "%.1f vs %.1f us/msg: %.2fx"
                               % (base, sink, base / sink)))
        else:
            out.append(_target(text, None, "missing"))
    return out


# ------------------------------------------------------------------ markdown

def _n(v, fmt="%.0f"):
    return "-" if v is None else fmt % v


def _ratio(base, v):
    if not base or not v:
        return "-"
    return "%.1fx" % (base / v)


def _rates(s):
    rs = s.get("rates") or []
    if len(rs) < 2:
        return ""
    return " (%s-%s)" % (_n(min(rs)), _n(max(rs)))


def _mib(kib):
    return "-" if kib is None else "%.1f" % (kib / 1024.0)


def table_accept(scn, summary, systems_order, md):
    md.append("| system | ringmx-bench msgs/s | ringmx durable is | smtp-source msgs/s | "
              "ringmx durable is | server CPU us/msg (bench / source) | RSS max MiB | "
              "errors |")
    md.append("|---|---|---|---|---|---|---|---|")
    b_base = _get(summary, scn, BASE, "ringmx-bench")
    s_base = _get(summary, scn, BASE, "smtp-source")
    for system in systems_order:
        b = summary.get((scn, system, "ringmx-bench"), {})
        s = summary.get((scn, system, "smtp-source"), {})
        if not b and not s:
            continue
        fails = (b.get("failed_runs") or 0) + (s.get("failed_runs") or 0)
        errs = (b.get("errors") or 0) + (s.get("errors") or 0)
        md.append("| %s | %s%s | %s | %s%s | %s | %s / %s | %s | %s |" % (
            system, _n(b.get("rate")), _rates(b), _ratio(b_base, b.get("rate")),
            _n(s.get("rate")), _rates(s), _ratio(s_base, s.get("rate")),
            _n(b.get("server_cpu_us_per_msg"), "%.1f"),
            _n(s.get("server_cpu_us_per_msg"), "%.1f"),
            _mib(b.get("rss_max_kib") or s.get("rss_max_kib")),
            "%d%s" % (errs, ", %d failed runs" % fails if fails else "")))


def table_forward(summary, systems_order, md):
    md.append("| system | ringmx-bench delivered msgs/s | accepted msgs/s | ringmx durable is |"
              " smtp-source delivered msgs/s | accepted msgs/s | ringmx durable is | "
              "server CPU us per delivered msg (bench / source) | all delivered |")
    md.append("|---|---|---|---|---|---|---|---|---|")
    b_base = _get(summary, "S4", BASE, "ringmx-bench")
    s_base = _get(summary, "S4", BASE, "smtp-source")
    for system in systems_order:
        b = summary.get(("S4", system, "ringmx-bench"), {})
        s = summary.get(("S4", system, "smtp-source"), {})
        if not b and not s:
            continue
        alld = [x.get("all_delivered") for x in (b, s) if x.get("rate")]
        md.append("| %s | %s%s | %s | %s | %s%s | %s | %s | %s / %s | %s |" % (
            system, _n(b.get("rate")), _rates(b), _n(b.get("accept_rate")),
            _ratio(b_base, b.get("rate")), _n(s.get("rate")), _rates(s),
            _n(s.get("accept_rate")), _ratio(s_base, s.get("rate")),
            _n(b.get("server_cpu_us_per_msg"), "%.1f"),
            _n(s.get("server_cpu_us_per_msg"), "%.1f"),
            "-" if not alld else ("yes" if all(alld) else "NO")))


def table_idle(summary, systems_order, md):
    md.append("| system | idle held (planned) | active msgs/s | ringmx durable is | "
              "RSS before -> with idle MiB | RSS per idle conn KiB | PSS per idle conn KiB |"
              " processes | server CPU us/msg |")
    md.append("|---|---|---|---|---|---|---|---|---|")
    base = _get(summary, "S5", BASE, "ringmx-bench")
    for system in systems_order:
        s = summary.get(("S5", system, "ringmx-bench"))
        if not s:
            continue
        md.append("| %s | %s (%s) | %s%s | %s | %s -> %s | %s | %s | %s | %s |" % (
            system, _n(s.get("idle_held")), _n(s.get("idle_planned")), _n(s.get("rate")),
            _rates(s), _ratio(base, s.get("rate")), _mib(s.get("rss_base_kib")),
            _mib(s.get("rss_idle_kib")), _n(s.get("rss_per_idle_conn_kib"), "%.2f"),
            _n(s.get("pss_per_idle_conn_kib"), "%.2f"), _n(s.get("procs_idle")),
            _n(s.get("server_cpu_us_per_msg"), "%.1f")))


def table_latency(summary, systems_order, md):
    md.append("| system | S1 peak msgs/s | offered (50%) | achieved | ack p50 ms | ack p99 ms |"
              " ack p99.9 ms | ack max ms | schedule kept | ringmx fsync p99 ms | "
              "ringmx server-side ack p99 ms |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for system in systems_order:
        s = summary.get(("S6", system, "ringmx-bench"))
        if not s or not s.get("rate"):
            continue
        a = s.get("latency_ack_us", {})
        md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            system, _n(s.get("peak")), _n(s.get("rate_target")), _n(s.get("rate")),
            _n(_ms(a.get("p50")), "%.2f"), _n(_ms(a.get("p99")), "%.2f"),
            _n(_ms(a.get("p99_9")), "%.2f"), _n(_ms(a.get("max")), "%.2f"),
            "yes" if s.get("schedule_kept") else "no (%d late)" % s.get("schedule_late", 0),
            _n(_ms(s.get("fsync_p99_us")), "%.2f"), _n(_ms(s.get("server_ack_p99_us")), "%.2f")))


def _ms(us):
    return None if us is None else us / 1000.0


def table_tls(scn, plain, summary, systems_order, md):
    """A TLS scenario beside its plain-text twin from the same run."""
    md.append("| system | msgs/s | ringmx durable is | plain %s msgs/s | TLS / plain | "
              "handshakes/s | handshake p50 / p99 ms | server CPU us/msg (TLS / plain) | "
              "RSS max MiB | errors |" % plain)
    md.append("|---|---|---|---|---|---|---|---|---|---|")
    base = _get(summary, scn, BASE, "ringmx-bench")
    for system in systems_order:
        t = summary.get((scn, system, "ringmx-bench"))
        if not t:
            continue
        p = summary.get((plain, system, "ringmx-bench"), {})
        hl = t.get("latency_handshake_us") or {}
        share = "-"
        if t.get("rate") and p.get("rate"):
            share = "%.0f%%" % (100.0 * t["rate"] / p["rate"])
        fails = t.get("failed_runs") or 0
        md.append("| %s | %s%s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s |" % (
            system, _n(t.get("rate")), _rates(t), _ratio(base, t.get("rate")),
            _n(p.get("rate")), share, _n(t.get("tls_handshakes_per_s")),
            _n(_ms(hl.get("p50")), "%.2f"), _n(_ms(hl.get("p99")), "%.2f"),
            _n(t.get("server_cpu_us_per_msg"), "%.1f"),
            _n(p.get("server_cpu_us_per_msg"), "%.1f"), _mib(t.get("rss_max_kib")),
            "%d%s%s" % (t.get("errors") or 0,
                        ", %d failed handshakes" % t["tls_failures"]
                        if t.get("tls_failures") else "",
                        ", %d failed runs" % fails if fails else "")))
    versions = sorted({"%s %s" % (v.get("tls_version"), v.get("tls_cipher"))
                       for k, v in summary.items() if k[0] == scn and v.get("tls_version")})
    if versions:
        md.append("")
        md.append("Negotiated: %s." % "; ".join(versions))


def section_tls_speed(speed, md):
    md.append("## Full TLS handshakes and AES-GCM per core (ringmx-tls-speed)")
    md.append("")
    if speed is None:
        md.append("Not measured.")
        md.append("")
        return
    md.append("wolfSSL %s as ringmx links it, %s certificate, %s %s: client and server in "
              "one thread through wolfSSL's custom I/O (no socket), the server's thread CPU "
              "timed around its calls only. Medians of %d round(s), min-max in parentheses."
              % (speed.get("wolfssl"), speed.get("certificate"), speed.get("version"),
                 speed.get("cipher"), speed["rounds"]))
    md.append("")
    md.append("| server CPU per full handshake | handshakes/s per core | AES-128-GCM GB/s | "
              "AES-256-GCM GB/s |")
    md.append("|---|---|---|---|")

    def cell(f, fmt):
        lo, hi = speed[f + "_range"]
        return "%s (%s-%s)" % (_n(speed[f], fmt), _n(lo, fmt), _n(hi, fmt))
    md.append("| %s us | %s | %s | %s |" % (
        cell("server_us_per_handshake", "%.1f"), cell("handshakes_per_s", "%.0f"),
        cell("aes128_gcm_gb_per_s", "%.2f"), cell("aes256_gcm_gb_per_s", "%.2f")))
    md.append("")


DESCRIPTIONS = {
    "ringmx-durable": "ringmx, release build, `workers = 2`, `fsync = always` (group commit, "
                      "250 after fdatasync)",
    "ringmx-nofsync": "ringmx, the same with `fsync = never` (not durable; benchmarks only)",
    "smtp-sink": "Postfix `smtp-sink` (one process, event-driven, throws mail away: the "
                 "ceiling of a classic event-driven server)",
    "postfix": "Postfix `smtpd` with its real queue (private `postfix -c DIR` instance; "
               "cleanup fsyncs each queue file before the 250); S1-S3, S5, S6: every "
               "message put on hold (accept only); S4: relayed to the upstream sink",
    "haraka-forward": "Haraka 3, `nodes = 2`, log level warn, no reverse DNS lookups, "
                      "`queue/smtp_forward` to an "
                      "upstream smtp-sink (acknowledges after the upstream's 250, one upstream "
                      "connection per message; nothing on disk)",
    "haraka-discard": "Haraka 3, `nodes = 2`, log level warn, no reverse DNS lookups, a queue "
                      "plugin that accepts and discards (its best case)",
}


def markdown(meta, summary, tgts, scenarios, systems_order, charts, runs=()):
    md = []
    md.append("# ringmx side by side: %s, %s" % (meta["date"], meta["host"]))
    md.append("")
    if meta.get("interrupted"):
        md.append("**The run was interrupted: the results are incomplete.**")
        md.append("")
    if meta["options"].get("quick"):
        md.append("**Quick smoke run (`--quick`): too short to be a measurement.**")
        md.append("")
    ls = meta["load_start"]
    lr = meta["load1_per_run"]
    oc = meta.get("others_cpu_share_per_run")
    md.append("Machine: %s, %d CPUs, %s GiB, kernel %s. Server and load generator share the "
              "same CPUs. The machine was shared with other work while this ran (other "
              "builds and tests): load average %.2f %.2f %.2f at the start, "
              "%.2f %.2f %.2f at the end; 1-minute load before each run: min %.2f, median "
              "%.2f, max %.2f (the load average also counts the benchmark's own processes, "
              "e.g. Postfix's cleanup processes waiting in fsync)."
              % (meta["cpu"], meta["cpus"], meta["mem_gib"], meta["kernel"], ls[0], ls[1],
                 ls[2], *meta["load_end"], lr["min"], lr["median"], lr["max"]))
    if oc:
        md.append("")
        md.append("CPU used by everything but the server, its client and the upstream sink "
                  "during each run (other work, and this harness), as a share of the "
                  "machine's %d CPUs: median %.0f%%, min %.0f%%, max %.0f%%."
                  % (meta["cpus"], 100 * oc["median"], 100 * oc["min"], 100 * oc["max"]))
    md.append("")
    o = meta["options"]
    md.append("ringmx %s%s; Postfix %s; Haraka %s on Node.js %s. %d round(s) per scenario, "
              "runs of about %g s, systems in rotating order, a fresh instance per round; "
              "`bench/compare/compare.py` wrote this file (took %.0f min)."
              % (meta["ringmx_commit"], " (with uncommitted changes)"
                 if meta["ringmx_tree_modified"] else "", meta["postfix"], meta["haraka"],
                 meta["node"], o["rounds"], o["run_seconds"], meta["duration_s"] / 60.0))
    md.append("")
    md.append("Systems:")
    md.append("")
    for s in systems_order:
        md.append("- `%s`: %s" % (s, DESCRIPTIONS[s]))
    md.append("")
    if any(s.startswith("TLS-") for s in meta["options"]["scenarios"]):
        md.append("TLS scenarios: every server offers STARTTLS with a self-signed %s "
                  "certificate made at run time with openssl: ringmx `tls_cert`/`tls_key` "
                  "on its smtp listener, Postfix `smtpd_tls_security_level = may` with "
                  "`smtpd_tls_cert_file`/`key_file` (no session cache), Haraka its `tls` "
                  "plugin (`config/tls.ini`). The client is ringmx-bench `--tls` (wolfSSL, "
                  "STARTTLS after EHLO, EHLO again; no session resumption, so every "
                  "handshake is a full one)."
                  % ("ECDSA P-256" if meta["options"].get("tls_cert", "ecdsa") == "ecdsa"
                     else "RSA 2048"))
        if meta.get("ringmx_version"):
            md.append("")
            md.append("`ringmx --version`: %s."
                      % "; ".join(l.strip() for l in meta["ringmx_version"].splitlines()
                                  if l.startswith(("ringmx", "wolfssl"))))
        md.append("")
    md.append("Numbers are medians over the rounds (min-max in parentheses); \"ringmx durable "
              "is\" is ringmx (durable)'s median divided by the system's, same client. Server "
              "CPU is user + system time of the server's whole process tree (every Postfix "
              "daemon, Haraka's master and workers) per acknowledged message (per delivered "
              "message in S4). RSS is the largest sum over the tree seen during the runs.")
    md.append("")
    md.append("## Targets")
    md.append("")
    for t in tgts:
        md.append("- **%s** %s: %s" % (t["result"], t["target"], t["measured"]))
    md.append("")
    if meta.get("tls_speed"):
        section_tls_speed(tls_speed_summary(meta["tls_speed"]), md)
    if charts:
        md.append("## Charts")
        md.append("")
        for c in charts:
            md.append("![%s](%s)" % (os.path.splitext(c)[0], c))
        md.append("")
    for scn in meta["options"]["scenarios"]:
        md.append("## %s: %s" % (scn, scenarios[scn]["title"]))
        md.append("")
        if scn in ("S1", "S2", "S3"):
            table_accept(scn, summary, systems_order, md)
        elif scn == "S4":
            table_forward(summary, systems_order, md)
        elif scn == "S5":
            table_idle(summary, systems_order, md)
        elif scn.startswith("TLS-"):
            table_tls(scn, scenarios[scn]["plain"], summary, systems_order, md)
        elif scn in ("S6-roll", "S6-source"):
            import scale
            md.extend(l.replace("## ", "### ") for l in scale.latency_markdown(
                [r for r in runs if r["scenario"] == scn]))
        else:
            table_latency(summary, systems_order, md)
        md.append("")
        shares = [v.get("others_cpu_share") for k, v in summary.items() if k[0] == scn]
        sp = _spread(shares)
        if sp:
            md.append("Other work's share of the CPUs during these runs: median %.0f%% "
                      "(%.0f%%-%.0f%%)." % (100 * sp["median"], 100 * sp["min"],
                                            100 * sp["max"]))
            md.append("")
        md.extend(NOTES.get(scn, []))
        fails = [(k, v) for k, v in summary.items() if k[0] == scn and v.get("failure")]
        for k, v in fails:
            md.append("- FAILED: %s with %s: %s" % (k[1], k[2], v["failure"][:300]))
        md.append("")
    md.append("## Caveats")
    md.append("")
    md.extend(caveats(meta))
    md.append("")
    return "\n".join(md)


NOTES = {
    "S1": ["ringmx-bench pipelines MAIL, RCPT and DATA (one round trip per message); "
           "smtp-source sends one command per round trip and adds about 115 bytes of its own "
           "headers to its 1024 body bytes (`-l 1024`), so its messages are about 10% larger "
           "than the bench's (which counts the whole message)."],
    "S2": ["smtp-source: `-l 32768`."],
    "S3": ["ringmx-bench: `--new-conn-per-message` (connect, EHLO, one message, QUIT); "
           "smtp-source without `-d`."],
    "S4": ["The rate is messages counted by the upstream smtp-sink (`-c`) divided by the time "
           "from the client's start until the last of them arrived (polled every 20 ms). "
           "smtp-sink cannot forward and haraka-discard does not, so they are not in this "
           "table. Postfix relays with its defaults (20 parallel deliveries, `in_flow_delay "
           "= 1s`); Haraka forwards inside the client's transaction, so its accepted and "
           "delivered rates are one."],
    "S5": ["The idle connections come from a separate ringmx-bench process (one connection "
           "sending one message per second plus the idle ones, each after EHLO); once held, "
           "the server's RSS is read, then a second ringmx-bench runs the 1,000 active "
           "connections for the run's length. RSS per idle connection = (RSS with the idle "
           "connections - RSS before) / connections held; for multi-process servers the "
           "RSS sum counts shared pages once per process, so PSS (shared pages split) is "
           "shown too."],
    "S6": ["Open loop (`ringmx-bench --rate`, 100 connections) at half of the system's own "
           "closed-loop S1 rate with ringmx-bench. Ack latency: from sending the bytes that "
           "end the data to the final reply, measured by the bench. ringmx's fsync and "
           "server-side ack p99 come from its /metrics histograms "
           "(`ringmx_store_fsync_latency_seconds`, `ringmx_smtp_ack_latency_seconds`), "
           "interpolated inside buckets whose bounds are 0.25, 0.5, 1, 2.5, 5 ms, so they "
           "are coarse. The table gives the median of each percentile over the rounds; the "
           "latency chart is a staircase through the percentiles (p50, p90, p99, p99.9, max) "
           "of the round with the median p99: the bench's JSON holds percentiles, not the "
           "histogram's buckets."],
    "TLS-S1": ["ringmx-bench `--tls`, 100 persistent connections: one STARTTLS handshake per "
               "connection, then 1 KiB messages (pipelined) inside TLS. \"plain S1\" is the "
               "same system's S1 with ringmx-bench from this run, measured round by round "
               "beside it (round 1 of S1, of TLS-S1, round 2 ...); \"TLS / plain\" the "
               "share of its plain rate kept under TLS. smtp-sink has no TLS."],
    "TLS-S3": ["ringmx-bench `--tls --new-conn-per-message`: connect, EHLO, STARTTLS, a full "
               "handshake, EHLO, one message, QUIT, again, 100 at a time; handshakes/s is "
               "about the connection rate. Server CPU per message includes the handshake's. "
               "\"plain S3\" is the same system's S3 with ringmx-bench from this run, measured "
               "round by round beside it. The client's handshake costs CPU on the same two "
               "CPUs as the server's (see client CPU in the JSON)."],
}


def caveats(meta):
    out = [
        "- One 2-CPU machine runs the server and the load generator (and, in S4, the "
        "upstream sink): every system competes with its client for the same two CPUs, so "
        "these are not the rates of a dedicated server.",
        "- The machine was shared with other builds and tests; the load averages "
        "above say how busy it was. Compare systems within one file, not across files.",
        "- Durability differs: ringmx durable and Postfix fsync every message before the "
        "250; ringmx-nofsync, smtp-sink and Haraka never write the message to disk.",
    ]
    o = meta["options"]
    if "S5" in o["scenarios"]:
        if meta["nofile_limit"] < o["idle_conns"] + 1500:
            out.append("- S5 did not hold %d idle connections: this machine caps the open-file "
                       "limit at %d per process (the harness cannot raise the hard limit "
                       "without CAP_SYS_RESOURCE), which binds ringmx and smtp-sink (one "
                       "process each) and each load generator. The idle count was lowered to "
                       "what fits, the same for every system but Postfix; \"idle held\" is "
                       "what each actually held."
                       % (o["idle_conns"], meta["nofile_limit"]))
        out.append("- S5, Postfix smtpd: one smtpd process per connection (and a cleanup "
                   "process per active one), so it ran with %d idle connections, not the "
                   "count the others held; its per-connection memory is that of a process."
                   % o["postfix_idle"])
    return out


# ------------------------------------------------------------------ charts

def _dat_value(v):
    return "NaN" if not v else "%.3f" % v


def write_plot_data(plot_dir, summary, scenarios, systems_order):
    """One .dat per throughput scenario (system, bench rate, source rate)
    and one per system for the S6 CDF (latency ms, nines, label)."""
    os.makedirs(plot_dir, exist_ok=True)
    panels = []
    for scn in ("S1", "S2", "S3", "S4", "S5"):
        rows = []
        has = [False, False]
        for system in systems_order:
            b = _get(summary, scn, system, "ringmx-bench")
            s = _get(summary, scn, system, "smtp-source")
            if b or s:
                rows.append("%s %s %s" % (system, _dat_value(b), _dat_value(s)))
                has = [has[0] or bool(b), has[1] or bool(s)]
        if rows:
            with open(os.path.join(plot_dir, "%s.dat" % scn), "w") as f:
                f.write("# system ringmx-bench smtp-source (msgs/s)\n" + "\n".join(rows) + "\n")
            title = {"S4": "S4 end to end (delivered)", "S5": "S5 1,000 active + idle"}.get(
                scn, "%s %s" % (scn, scenarios[scn]["title"].split(",")[1].strip()
                                if scn != "S3" else "new connection per message"))
            panels.append((scn, title, has))
    cdf = []
    for system in systems_order:
        s = summary.get(("S6", system, "ringmx-bench"))
        run = (s or {}).get("cdf_run")
        if not run or not run.get("p50"):
            continue
        path = os.path.join(plot_dir, "S6-%s.dat" % system)
        with open(path, "w") as f:
            f.write("# latency_ms nines label\n")
            # the staircase starts at the fastest point we know: p50 at 50%
            for lvl, q in LATENCY_LEVELS:
                if run.get(lvl) is not None:
                    f.write("%.4f %.4f %s\n" % (run[lvl] / 1000.0, _nines(q), lvl))
            f.write("%.4f %.4f max\n" % (run["max"] / 1000.0, _nines(0.9999)))
        cdf.append(system)
    return panels, cdf


def _nines(q):
    import math
    return -math.log10(1.0 - q)


def draw_charts(plot_dir, out_dir, stem, panels, cdf):
    """Runs gnuplot on plot.gp; returns the PNG file names written."""
    names = []
    exe = None
    for d in os.environ.get("PATH", "").split(":") + ["/usr/bin"]:
        if d and os.access(os.path.join(d, "gnuplot"), os.X_OK):
            exe = os.path.join(d, "gnuplot")
            break
    if exe is None:
        print("compare: gnuplot not found (make bench-deps installs gnuplot-nox); no charts",
              flush=True)
        return names
    tp = "%s-throughput.png" % stem
    lat = "%s-latency.png" % stem
    variables = ("datadir='%s'; panels='%s'; cdf='%s'; out_throughput='%s'; out_latency='%s'"
                 % (plot_dir, " ".join(p[0] for p in panels), " ".join(cdf),
                    os.path.join(out_dir, tp) if panels else "",
                    os.path.join(out_dir, lat) if cdf else ""))
    for p, title, has in panels:
        variables += "; t_%s='%s'; b_%s=%d; s_%s=%d" % (p, title.replace("'", ""), p,
                                                       has[0], p, has[1])
    cp = subprocess.run([exe, "-e", variables, os.path.join(HERE, "plot.gp")],
                        capture_output=True, timeout=120)
    if cp.returncode != 0:
        print("compare: gnuplot failed: %s" % cp.stderr.decode("utf-8", "replace")[-2000:],
              flush=True)
        return names
    for n in ((tp,) if panels else ()) + ((lat,) if cdf else ()):
        if os.path.exists(os.path.join(out_dir, n)):
            names.append(n)
    return names


def write_all(args, runs, meta, scenarios, scratch, write_json=True):
    import systems
    summary = summarize(runs)
    tgts = targets(summary)
    speed = tls_speed_summary(meta.get("tls_speed"))
    if speed is not None:
        tgts += tls_targets(speed)
        meta["tls_speed_medians"] = speed
    order = [s for s in systems.SYSTEMS if s in args.systems]
    os.makedirs(args.results_dir, exist_ok=True)
    stem = "%s-%s" % (meta["date"], meta["host"])
    panels, cdf = write_plot_data(os.path.join(scratch, "plot"), summary, scenarios, order)
    charts = draw_charts(os.path.join(scratch, "plot"), args.results_dir, stem, panels, cdf)
    md_path = os.path.join(args.results_dir, stem + ".md")
    with open(md_path, "w") as f:
        f.write(markdown(meta, summary, tgts, scenarios, order, charts, runs))
    if any(r["scenario"].startswith("SCALE-") for r in runs):
        import scale
        scale_md, rows = scale.scale_markdown(runs)
        scale.write_gnuplot(args.results_dir, rows)
        with open(os.path.join(args.results_dir, "README.md"), "w") as f:
            f.write("# How ringmx's cost grows: %s, %s\n\n" % (meta["date"], meta["host"]))
            f.write("Machine: %s, %d CPUs; load average %.2f at the start, %.2f at the end. "
                    "Runs of about %g s; `python3 bench/compare/compare.py --scale` wrote "
                    "this file (with %s beside it).\n\n"
                    % (meta["cpu"], meta["cpus"], meta["load_start"][0], meta["load_end"][0],
                       meta["options"]["run_seconds"], stem + ".md"))
            f.write("\n".join(scale_md) + "\n")
            if os.path.exists(os.path.join(args.results_dir, "scale.png")):
                f.write("![scale](scale.png)\n\n")
            f.write("\n".join(scale.latency_markdown(runs)) + "\n")
    js_path = os.path.join(args.results_dir, stem + ".json")
    if not write_json:
        return [md_path] + [os.path.join(args.results_dir, c) for c in charts]
    with open(js_path, "w") as f:
        json.dump({"meta": meta, "targets": tgts,
                   "medians": [dict(scenario=k[0], system=k[1], client=k[2], **v)
                               for k, v in sorted(summary.items())],
                   "runs": runs}, f, indent=1, sort_keys=True)
        f.write("\n")
    for t in tgts:
        print("compare: %-12s %s: %s" % (t["result"], t["target"], t["measured"]), flush=True)
    return [md_path, js_path] + [os.path.join(args.results_dir, c) for c in charts]
