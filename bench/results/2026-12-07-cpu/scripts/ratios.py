#!/usr/bin/env python3
"""ratios.py JSON...: from bench/compare result files, server CPU per message of ringmx durable
and smtp-sink per scenario and client (medians over the rounds, and each round's ratio, the two
systems of a round having run back to back), ringmx's io-wq share and records per group commit."""
import json, statistics, sys

for path in sys.argv[1:]:
    runs = json.load(open(path))["runs"]
    print("## %s" % path)
    print("| scenario, client | ringmx us/msg | smtp-sink us/msg | ratio of medians | ratio per round | ringmx io-wq share | records per commit | other work's CPU share |")
    print("|---|---|---|---|---|---|---|---|")
    for scn in ("S1", "S3"):
        for client in ("ringmx-bench", "smtp-source"):
            sel = lambda s: sorted((r for r in runs if r["scenario"] == scn and r["client"] == client
                                    and r["system"] == s and r.get("server_cpu_us_per_msg")),
                                   key=lambda r: r["round"])
            rx, sk = sel("ringmx-durable"), sel("smtp-sink")
            if not rx or not sk:
                continue
            mx = statistics.median(r["server_cpu_us_per_msg"] for r in rx)
            ms = statistics.median(r["server_cpu_us_per_msg"] for r in sk)
            per = ["%.2f" % (a["server_cpu_us_per_msg"] / b["server_cpu_us_per_msg"]) for a, b in zip(rx, sk)]
            iowq = statistics.median(r.get("iowq_cpu_share") or 0 for r in rx)
            rpc = statistics.median(r["messages"] / r["commits"] for r in rx if r.get("commits"))
            oth = statistics.median(r.get("others_cpu_share") or 0 for r in rx + sk)
            print("| %s %s | %.1f | %.1f | %.2fx | %s | %.0f%% | %.1f | %.0f%% |"
                  % (scn, client, mx, ms, mx / ms, ", ".join(per), 100 * iowq, rpc, 100 * oth))
    print()
