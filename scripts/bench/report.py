#!/usr/bin/env python3
"""Prints the tables of scripts/bench.sh from its results file (tab-separated lines).

    report.py RESULTS.tsv

Lines are `run`, `import` or `copy` records (see bench.sh). Each scenario row shows the median
over its rounds; the ratio columns compare the row with the other server of its scenario
(the baseline): requests per second (higher is better) and p99 (lower is better).
"CPU us/req" is the server's CPU time per request (all its threads, not Postgres): on a
shared or busy machine it is steadier than req/s. "cache miss %" is the share of the service's
link cache lookups that went to the database while measured ("-" with no cache or no lookups).
"""

import statistics
import sys
from collections import OrderedDict

# What the issue asks of each scenario: shown next to the figures, never judged here.
TARGETS = {
    "hot": "rps >= 0.90, p99 <= 1.3x",
    "zipf": "rps >= 0.80",
    "cold-sqlite": "rps >= 0.90",
    "cold-pg": "rps >= 0.90",
    "create-sqlite": ">= 20000/s, p99 < 25 ms",
    "create-pg": ">= 15000/s",
    "scale-hot": "p99 <= 1.5x",
    "scale-cold": "p99 <= 1.5x",
    "clicks-hot": "no measurable cost",
    "clicks-zipf": "no measurable cost",
}


def ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def median_or_none(values: list) -> "float | None":
    return statistics.median(float(v) for v in values) if values else None


def main() -> None:
    runs: "OrderedDict[tuple, list]" = OrderedDict()
    transfers = []
    with open(sys.argv[1]) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if fields[0] == "run":
                # run scenario role label dataset round rps p50 p99 errors rss_kb srv_cpu load_cpu
                # ready_ms cache_miss_pct
                key = (fields[1], fields[2], fields[3], fields[4])
                runs.setdefault(key, []).append(fields[5:])
            elif fields[0] in ("import", "copy"):
                transfers.append(fields)

    rows = []
    medians = {}
    for (scenario, role, label, dataset), records in runs.items():
        col = lambda i: [float(r[i]) for r in records]  # noqa: E731
        m = {
            "rps": statistics.median(col(1)),
            "p50": statistics.median(col(2)),
            "p99": statistics.median(col(3)),
            "errors": int(sum(col(4))),
            "rss": max(col(5)) / 1024,
            "srv_cpu": statistics.median(col(6)),
            "load_cpu": statistics.median(col(7)),
            "ready": statistics.median(col(8)),
            "rounds": len(records),
            "miss": median_or_none([r[9] for r in records if len(r) > 9 and r[9] != "-"]),
        }
        medians[(scenario, role)] = m
        rows.append((scenario, role, label, dataset, m))

    header = (
        "scenario",
        "server",
        "links",
        "req/s",
        "p50 ms",
        "p99 ms",
        "peak RSS MiB",
        "srv CPU%",
        "CPU us/req",
        "wrk CPU%",
        "ready ms",
        "cache miss %",
        "errors",
        "rounds",
        "rps ratio",
        "p99 ratio",
        "target (issue)",
    )
    table = [header]
    for scenario, role, label, dataset, m in rows:
        base = medians.get((scenario, "baseline")) if role == "service" else None
        rps_ratio = f"{m['rps'] / base['rps']:.3f}" if base and base["rps"] else "-"
        p99_ratio = f"{m['p99'] / base['p99']:.2f}" if base and base["p99"] else "-"
        table.append(
            (
                scenario,
                label,
                dataset,
                f"{m['rps']:.0f}",
                ms(m["p50"]),
                ms(m["p99"]),
                f"{m['rss']:.1f}",
                f"{m['srv_cpu']:.0f}",
                f"{m['srv_cpu'] / 100 / m['rps'] * 1e6:.1f}" if m["rps"] else "-",
                f"{m['load_cpu']:.0f}",
                f"{m['ready']:.0f}",
                "-" if m["miss"] is None else f"{m['miss']:.1f}",
                str(m["errors"]),
                str(m["rounds"]),
                rps_ratio,
                p99_ratio,
                TARGETS.get(scenario, "") if role == "service" else "",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for n, r in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))

    if transfers:
        print()
        print("data loading (this run; cached datasets are not reloaded)")
        for kind, what, count, seconds in transfers:
            count_i, secs = int(count), float(seconds)
            rate = count_i / secs if secs > 0 else 0
            print(f"  {kind:<6} {what:<28} {count_i:>10} links  {secs:8.1f} s  {rate:10.0f} links/s")


if __name__ == "__main__":
    main()
