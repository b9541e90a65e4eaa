"""Core figures: engine transitions per second and snapshot encode+sign+decode cost.

Run: `make bench` (or `.venv/bin/python -m bench.core_bench`). One process, one core.
Targets from the issue: >= 20,000 transitions/s on a 10-step chain; encode+sign+decode
<= 1 ms for an instance with 100 history entries.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from rustyflower import (
    Flow,
    FlowDefinition,
    Snapshot,
    SnapshotKeys,
    decode_snapshot,
    encode_snapshot,
    generate_encryption_key,
    generate_signing_key,
)

# The one internal import of bench/: this measures the pure engine itself, below every
# runtime, and no public API drives it without a runtime's own costs on top.
from rustyflower.core.engine import ActivityCompleted, RunActivity, advance, start

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def chain(steps: int) -> FlowDefinition:
    flow = Flow("chain", version="1")
    for index in range(steps):
        flow.task(f"Step {index + 1}", "step", result_path=f"$.step{index + 1}")
    return flow.build()


def run_chain(definition: FlowDefinition, instance: int) -> int:
    transition = start(definition, {"n": instance}, f"bench-{instance}", NOW)
    transitions = 1
    now = NOW
    while not transition.snapshot.finished:
        command = transition.commands[0]
        assert isinstance(command, RunActivity)
        now += timedelta(milliseconds=1)
        transition = advance(transition.snapshot, ActivityCompleted(command.call_id, 1), now)
        transitions += 1
    return transitions


def bench_transitions(instances: int, repeats: int) -> dict[str, Any]:
    definition = chain(10)
    run_chain(definition, 0)  # warm caches
    rates = []
    for _ in range(repeats):
        began = time.perf_counter()
        total = sum(run_chain(definition, i) for i in range(instances))
        rates.append(total / (time.perf_counter() - began))
    return {
        "workload": f"{instances} instances x 10-step chain (start + 10 completions each)",
        "transitions_per_second_median": round(statistics.median(rates)),
        "transitions_per_second_best": round(max(rates)),
        "target": 20_000,
    }


def instance_with_history(entries: int) -> Snapshot:
    """A 60-step chain advanced until its bounded history holds ``entries`` entries."""
    definition = chain(60)
    transition = start(definition, {"order": "A-1", "lines": list(range(5))}, "bench-h", NOW)
    snapshot = transition.snapshot
    now = NOW
    while len(snapshot.state.history) < entries and not snapshot.finished:
        command = transition.commands[0]
        assert isinstance(command, RunActivity)
        now += timedelta(seconds=1)
        transition = advance(snapshot, ActivityCompleted(command.call_id, {"ok": True}), now)
        snapshot = transition.snapshot
    return snapshot


def bench_snapshot(rounds: int) -> list[dict[str, Any]]:
    snapshot = instance_with_history(100)
    signing = generate_signing_key("bench")
    configurations = {
        "unsigned": SnapshotKeys.none(),
        "signed (HMAC-SHA256)": SnapshotKeys.signing_only(signing),
        "signed + encrypted (AES-256-GCM)": SnapshotKeys.from_keys(
            [signing], [generate_encryption_key("bench")]
        ),
    }
    results = []
    for label, keys in configurations.items():
        data = encode_snapshot(snapshot, keys)
        assert decode_snapshot(data, keys) == snapshot
        samples = []
        for _ in range(rounds):
            began = time.perf_counter()
            decode_snapshot(encode_snapshot(snapshot, keys), keys)
            samples.append((time.perf_counter() - began) * 1000)
        samples.sort()
        results.append(
            {
                "keys": label,
                "history_entries": len(snapshot.state.history),
                "size_bytes": len(data),
                "encode_sign_decode_ms_p50": round(samples[len(samples) // 2], 4),
                "encode_sign_decode_ms_p99": round(samples[int(len(samples) * 0.99)], 4),
                "target_ms": 1.0,
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {
        "machine": f"{platform.python_implementation()} {platform.python_version()} "
        f"on {platform.machine()}",
        "engine": bench_transitions(args.instances, args.repeats),
        "snapshot": bench_snapshot(args.rounds),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    engine = report["engine"]
    print(f"{report['machine']}")
    print(f"engine: {engine['workload']}")
    print(
        f"  {engine['transitions_per_second_median']:,} transitions/s median "
        f"(best {engine['transitions_per_second_best']:,}; target >= 20,000)"
    )
    print("snapshot encode + sign + decode, 100 history entries:")
    for row in report["snapshot"]:
        print(
            f"  {row['keys']:<34} {row['size_bytes']:>7,} bytes  "
            f"p50 {row['encode_sign_decode_ms_p50']:.3f} ms  "
            f"p99 {row['encode_sign_decode_ms_p99']:.3f} ms"
            "  (target <= 1 ms)"
        )


if __name__ == "__main__":
    main()
