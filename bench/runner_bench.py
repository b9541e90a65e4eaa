"""RustyFlower's Redis runner against its peers, side by side in one run on one Redis server.

Run: `.venv/bin/python -m bench.runner_bench` (add `--json` for machine-readable output).
Needs the `bench` extra for the peers: `.venv/bin/pip install -e '.[bench]'` (Celery,
Dramatiq, arq).

One fresh redis-server (append-only, fsync every second) serves the whole run; it is
flushed between systems and configurations. Every system runs its worker as separate
process(es) and the workloads of bench.workloads: W1 (200 chains of 10 trivial steps,
steps/s), W2 (2,000 single steps, flows/s), each with one-by-one starts (the headline)
and with the system's bulk API (the second row), and L (one chain at a time: p50 and
p99 latency). Every configuration runs --rounds times, in an order that rotates between
rounds; the tables show medians and ranges, and the ratios compare RustyFlower's best
configuration against the best peer configuration per workload. Targets (issue 13):
W1 and W2 >= 2x the best peer, L p50 <= 0.5x Celery's. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from typing import Any

from bench import peer_arq, peer_celery, peer_dramatiq
from bench.harness import flushall, load_average, redis_server
from bench.rf_system import RSS_INSTANCES, RustyFlowerBench
from bench.workloads import CHAIN_STEPS, L_RUNS, W1_INSTANCES, W2_FLOWS, SystemBench

TARGETS = {"w1": 2.0, "w2": 2.0, "l_p50_celery": 0.5, "rss_mb": 150.0}
PEERS = ("celery", "dramatiq", "arq")
RF = "RustyFlower"

# name, label, getter, higher is better
METRICS: tuple[tuple[str, str, Callable[[dict[str, Any]], float], bool], ...] = (
    ("w1", "W1 steps/s", lambda row: row["w1_one-by-one"]["per_s"], True),
    ("w2", "W2 flows/s", lambda row: row["w2_one-by-one"]["per_s"], True),
    ("l_p50", "L p50 ms", lambda row: row["latency"]["p50_ms"], False),
    ("l_p99", "L p99 ms", lambda row: row["latency"]["p99_ms"], False),
    ("w1_bulk", "W1 bulk steps/s", lambda row: row["w1_bulk"]["per_s"], True),
    ("w2_bulk", "W2 bulk flows/s", lambda row: row["w2_bulk"]["per_s"], True),
)
RATIOS = ("w1", "w2", "l_p50", "w1_bulk", "w2_bulk")


def _list(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def parse_pools(text: str) -> list[tuple[str, int]]:
    pools = []
    for item in text.split(","):
        pool, _, concurrency = item.strip().partition(":")
        pools.append((pool, int(concurrency or 1)))
    return pools


# --- the run ---------------------------------------------------------------------------------


def configurations(
    args: argparse.Namespace, url: str, server_pids: list[int]
) -> list[Callable[[], SystemBench]]:
    """One factory per system configuration of the run (each builds a fresh bench)."""
    poll_s = args.poll_ms / 1000
    made: list[Callable[[], SystemBench]] = []
    for concurrency in args.rf_concurrency:
        made.append(lambda c=concurrency: RustyFlowerBench(url, server_pids, poll_s, concurrency=c))
    for processes in args.rf_processes:
        made.append(lambda p=processes: RustyFlowerBench(url, server_pids, poll_s, processes=p))
    if "celery" in args.peers:
        for pool, concurrency in args.celery_pools:
            made.append(
                lambda p=pool, c=concurrency: peer_celery.CeleryBench(
                    url, server_pids, poll_s, p, c
                )
            )
    if "dramatiq" in args.peers:
        for threads in args.dramatiq_threads:
            made.append(lambda t=threads: peer_dramatiq.DramatiqBench(url, server_pids, poll_s, t))
    if "arq" in args.peers:
        for max_jobs in args.arq_max_jobs:
            made.append(lambda m=max_jobs: peer_arq.ArqBench(url, server_pids, poll_s, m))
    return made


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": load_average(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "command": "python -m bench.runner_bench " + " ".join(sys.argv[1:]),
        "rounds": args.rounds,
        "workloads": {
            "w1": f"{W1_INSTANCES} instances x {CHAIN_STEPS}-step chain, steps/s",
            "w2": f"{W2_FLOWS} single-step flows, flows/s",
            "l": f"one {CHAIN_STEPS}-step instance at a time, {L_RUNS} runs",
            "rss": f"worker RSS with {RSS_INSTANCES:,} instances waiting for an event",
        },
    }
    rows: list[dict[str, Any]] = []
    with redis_server(args.keep_data) as server:
        assert server.process is not None
        pids = [server.process.pid]
        report["redis"] = f"redis-server {server.version()} (appendonly yes, appendfsync everysec)"
        made = configurations(args, server.url, pids)
        for round_index in range(args.rounds):
            shift = round_index % len(made)
            for factory in made[shift:] + made[:shift]:  # the order rotates between rounds
                flushall(server.url)
                bench = factory()
                progress(f"[round {round_index + 1}] {bench.system}: {bench.label} ...")
                row = bench.run()
                row["round"] = round_index
                row["load_average_after"] = load_average()
                rows.append(row)
        if not args.skip_rss:
            rss_rows = []
            for flow in ("waiter", "prepared-waiter"):
                flushall(server.url)
                progress(f"RustyFlower worker RSS, {RSS_INSTANCES:,} waiting ({flow}) ...")
                rf = RustyFlowerBench(server.url, pids, args.poll_ms / 1000)
                try:
                    rss_rows.append(rf.rss(flow, progress))
                finally:
                    rf.close()
            report["rss"] = rss_rows
    report["table"] = aggregate(rows)
    report["summary"] = summarise(rows, report.get("rss", []))
    report["runs"] = rows
    return report


# --- aggregation -----------------------------------------------------------------------------


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per system configuration: each metric's median over the rounds, lowest and highest."""
    result = []
    for system, configuration in dict.fromkeys((r["system"], r["configuration"]) for r in rows):
        mine = [r for r in rows if (r["system"], r["configuration"]) == (system, configuration)]
        entry: dict[str, Any] = {
            "system": system,
            "configuration": configuration,
            "rounds": len(mine),
        }
        for name, _, metric, _ in METRICS:
            values = [metric(row) for row in mine]
            entry[name] = round(statistics.median(values), 2)
            entry[f"{name}_range"] = [min(values), max(values)]
        for name in ("w1_one-by-one", "w2_one-by-one", "w1_bulk", "w2_bulk"):
            entry[f"{name}_cpu"] = {
                key: round(statistics.median(row[name]["cpu_per_unit"][key] for row in mine), 1)
                for key in mine[0][name]["cpu_per_unit"]
            }
        entry["w2_start_loop_share"] = round(
            statistics.median(
                row["w2_one-by-one"]["start_loop_seconds"] / row["w2_one-by-one"]["seconds"]
                for row in mine
            ),
            2,
        )
        result.append(entry)
    return result


def _best(table: list[dict[str, Any]], name: str, high: bool) -> dict[str, Any] | None:
    if not table:
        return None
    return (max if high else min)(table, key=lambda entry: entry[name])


def summarise(rows: list[dict[str, Any]], rss: list[dict[str, Any]]) -> dict[str, Any]:
    """RustyFlower's best configuration against the best peer configuration, per workload.

    The ratios are taken against the best of all peers' configurations for each workload
    separately (the hardest comparison for RustyFlower); L p50 also against Celery's best,
    the issue's latency target. The per-round ratios show the spread.
    """
    table = aggregate(rows)
    ours = [entry for entry in table if entry["system"] == RF]
    peers = [entry for entry in table if entry["system"] != RF]
    celery = [entry for entry in peers if entry["system"] == "Celery"]
    summary: dict[str, Any] = {"best": {}, "ratios": {}, "ratios_per_round": {}, "targets_met": {}}
    for name, _, _, high in METRICS:
        mine, theirs = _best(ours, name, high), _best(peers, name, high)
        if mine is None or theirs is None:
            continue
        summary["best"][name] = {
            "rustyflower": mine[name],
            "rustyflower_configuration": mine["configuration"],
            "peer": theirs[name],
            "peer_system": theirs["system"],
            "peer_configuration": theirs["configuration"],
        }
        if name in RATIOS:
            summary["ratios"][name] = round(mine[name] / theirs[name], 2)
            summary["ratios_per_round"][name] = _per_round(rows, name, high)
    best_celery = _best(celery, "l_p50", high=False)
    best_rf = _best(ours, "l_p50", high=False)
    if best_celery is not None and best_rf is not None:
        summary["ratios"]["l_p50_celery"] = round(best_rf["l_p50"] / best_celery["l_p50"], 2)
    ratios = summary["ratios"]
    for name, target in TARGETS.items():
        if name in ratios:
            met = ratios[name] <= target if name.startswith("l_") else ratios[name] >= target
            summary["targets_met"][name] = met
    if rss:
        worst = max(row["rss_mb"] for row in rss)
        summary["rss_mb"] = worst
        summary["targets_met"]["rss"] = worst <= TARGETS["rss_mb"]
    return summary


def _per_round(rows: list[dict[str, Any]], name: str, high: bool) -> list[float]:
    metric = next(getter for key, _, getter, _ in METRICS if key == name)
    pick = max if high else min
    found = []
    for round_index in sorted({row["round"] for row in rows}):
        mine = [metric(r) for r in rows if r["round"] == round_index and r["system"] == RF]
        theirs = [metric(r) for r in rows if r["round"] == round_index and r["system"] != RF]
        if mine and theirs:
            found.append(round(pick(mine) / pick(theirs), 2))
    return found


# --- the report ------------------------------------------------------------------------------


def _cell(entry: dict[str, Any], name: str, digits: int) -> str:
    low, high = entry[f"{name}_range"]
    if entry["rounds"] == 1:
        return f"{entry[name]:,.{digits}f}"
    return f"{entry[name]:,.{digits}f} [{low:,.{digits}f}-{high:,.{digits}f}]"


def print_report(report: dict[str, Any]) -> None:
    load = ", ".join(str(value) for value in report["load_average_at_start"])
    print(f"{report['date']} · {report['machine']} · load average at start {load}")
    print(f"{report['redis']} · median of {report['rounds']} round(s) [lowest-highest]")
    print(f"command: {report['command']}")
    table = report["table"]
    width = max([len(f"{e['system']}: {e['configuration']}") for e in table] + [20]) + 1
    for title, columns in (
        ("One-by-one starts (the headline)", (("w1", 0), ("w2", 0), ("l_p50", 1), ("l_p99", 1))),
        ("Bulk starts (each system's bulk API)", (("w1_bulk", 0), ("w2_bulk", 0))),
    ):
        print()
        print(title)
        header = f"{'system: configuration':<{width}}" + "".join(
            f"{next(label for key, label, _, _ in METRICS if key == name):>24}"
            for name, _ in columns
        )
        print(header)
        print("-" * len(header))
        for entry in table:
            cells = "".join(f"{_cell(entry, name, digits):>24}" for name, digits in columns)
            print(f"{entry['system'] + ': ' + entry['configuration']:<{width}}{cells}")
    print()
    print("CPU per step (W1) and per flow (W2), one-by-one starts, microseconds:")
    print("redis-server / worker processes / client; 'other': how busy other programs kept")
    print("the machine meanwhile (% of all cores):")
    for entry in table:
        w1, w2 = entry["w1_one-by-one_cpu"], entry["w2_one-by-one_cpu"]
        print(
            f"  {entry['system'] + ': ' + entry['configuration']:<{width}} "
            f"W1 {w1['redis_us']:>4.0f} / {w1['worker_us']:>5.0f} / {w1['client_us']:>4.0f} "
            f"other {w1['other_programs_pct']:>3.0f}%   "
            f"W2 {w2['redis_us']:>4.0f} / {w2['worker_us']:>5.0f} / {w2['client_us']:>4.0f} "
            f"other {w2['other_programs_pct']:>3.0f}%"
        )
    summary = report["summary"]
    if summary["ratios"]:
        print()
        print("RustyFlower's best against the best peer, per workload (medians):")
        for name in RATIOS:
            if name not in summary["ratios"]:
                continue
            best = summary["best"][name]
            rounds = ", ".join(f"{value:.2f}" for value in summary["ratios_per_round"][name])
            target = TARGETS.get(name)
            verdict = ""
            if target is not None:
                met = summary["targets_met"][name]
                verdict = f"  target >= {target}x: {'met' if met else 'MISSED'}"
            label = next(lab for key, lab, _, _ in METRICS if key == name)
            print(
                f"  {label:<16} {summary['ratios'][name]:>5.2f}x{verdict}  "
                f"(per round: {rounds}; best peer: {best['peer_system']}, "
                f"{best['peer_configuration']})"
            )
        if "l_p50_celery" in summary["ratios"]:
            met = summary["targets_met"]["l_p50_celery"]
            print(
                f"  {'L p50 vs Celery':<16} {summary['ratios']['l_p50_celery']:>5.2f}x  "
                f"target <= {TARGETS['l_p50_celery']}x: {'met' if met else 'MISSED'}"
            )
    if report.get("rss"):
        print()
        print(f"RustyFlower worker RSS with {RSS_INSTANCES:,} waiting instances:")
        for row in report["rss"]:
            print(
                f"  flow {row['flow']:<16} {row['instances_waiting']:>6,} waiting: "
                f"VmRSS {row['rss_mb']:.1f} MB (peak {row['peak_rss_mb']:.1f} MB, "
                f"idle before {row['baseline_rss_mb']:.1f} MB)"
            )
        met = summary["targets_met"]["rss"]
        print(f"  target <= {TARGETS['rss_mb']:.0f} MB: {'met' if met else 'MISSED'}")
    loads = sorted({tuple(row["load_average_after"]) for row in report["runs"]})
    if loads:
        print()
        print(
            "load average after each configuration (1, 5, 15 min): "
            + "; ".join(", ".join(f"{v:.1f}" for v in load) for load in loads)
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every configuration (2)")
    parser.add_argument(
        "--peers",
        type=lambda text: [item.strip() for item in text.split(",") if item.strip()],
        default=list(PEERS),
        help="peers to run, comma-separated (default celery,dramatiq,arq; '' for none)",
    )
    parser.add_argument(
        "--rf-concurrency", type=_list, default=[1], help="executor threads, a list (1)"
    )
    parser.add_argument(
        "--rf-processes",
        type=_list,
        default=[],
        help="process-scaling rows: `rustyflower worker --processes N` for each N of the "
        "list, e.g. 1,2,4 (default none)",
    )
    parser.add_argument(
        "--celery-pools",
        type=parse_pools,
        default=parse_pools("solo:1,prefork:1,threads:4"),
        help="Celery pool:concurrency list (default solo:1,prefork:1,threads:4)",
    )
    parser.add_argument(
        "--dramatiq-threads", type=_list, default=[1, 8], help="Dramatiq worker threads (1,8)"
    )
    parser.add_argument(
        "--arq-max-jobs", type=_list, default=[10], help="arq jobs at once, a list (10)"
    )
    parser.add_argument("--poll-ms", type=float, default=10.0, help="W1/W2 completion poll (10)")
    parser.add_argument("--skip-rss", action="store_true", help="leave out the RSS measure")
    parser.add_argument("--keep-data", action="store_true", help="keep the Redis data directory")
    args = parser.parse_args()
    unknown = [peer for peer in args.peers if peer not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}: use {', '.join(PEERS)}")
    modules = {"celery": peer_celery, "dramatiq": peer_dramatiq, "arq": peer_arq}
    missing = [peer for peer in args.peers if not modules[peer].available()]
    if missing:
        sys.exit(
            f"not installed: {', '.join(missing)}: `.venv/bin/pip install -e '.[bench]'` "
            "(or leave them out with --peers)"
        )

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = run(args, progress)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
