"""Mixed-stream benchmark: the crmstream worker against a bare Faust agent, on the embedded
broker and Redis, with purchases, chats and feedback of 5,000 customers at once.

Each run starts a fresh stack, creates every topic with ``--partitions`` partitions and
pre-publishes ``--events`` events of :mod:`mixed_workload` (the same events every run).
Then, one after the other, each in its own consumer group and measured from its first
applied batch to its last: two workers of each kind (crmstream, and the bare Faust agents
of ``bench/faust_baseline.py``; which kind goes first alternates between runs), one Faust
worker, one crmstream worker. That last worker, warm, then gets steady traffic at 50% and
80% of the one-worker crmstream throughput (median of the runs so far), one event in 40
being a strongly negative chat message of a new customer; an alert's latency runs from
the producer's ``send`` to the alert's arrival on ``crm.alerts``. In the last run the same
worker then stays at 80% for ``--soak-minutes`` (shortened if needed to end within
``--budget-minutes``): RSS after that warm-up and at the end. ``bench/checkpoint.py
--json`` runs first, if it exists.

Throughput and CPU per event come from the worker processes (psutil), the stage costs from
the Redis hash ``crm:metrics:stages`` if the worker keeps one. Prints progress, a table of
medians (min–max) and writes everything to ``--json``. Nothing is asserted.

    python bench/mixed.py [--runs 3] [--events 20000] [--soak-minutes 10] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
from alert_latency import AlertClock
from mixed_report import ratios, summary, table
from mixed_runs import (
    HERE,
    STAGES,
    BenchStack,
    CpuMeter,
    Drain,
    Workers,
    drain,
    latencies,
    publish_steady,
    stage_costs,
    wait_applied,
    workers,
)
from mixed_workload import TOPICS, MixedWorkload, describe, load_pools
from rich.console import Console

from crmstream.streams.settings import Settings

#: One event in this many of the steady traffic is a probe (10% of the chat messages).
PROBE_EVERY = 40
LOADS = (0.5, 0.8)

#: Seconds the end of a soak needs within the budget: catch-up, stopping, the report.
SOAK_RESERVE = 35.0

FULL = {
    "events": 20000,
    "latency_seconds": 10.0,
    "soak_minutes": 10.0,
    "session_timeout": 6.0,
    "checkpoint": True,
}
QUICK = {
    "events": 2000,
    "latency_seconds": 3.0,
    "soak_minutes": 0.25,
    # A short session timeout joins the group sooner (Tansu completes a join after half).
    "session_timeout": 3.0,
    # bench/checkpoint.py trains models for 100,000 customers: longer than all the rest.
    "checkpoint": False,
}


class Progress:
    """Timestamped progress lines on standard error; the clock starts with the process."""

    def __init__(self) -> None:
        self.start = psutil.Process().create_time()

    @property
    def elapsed(self) -> float:
        return time.time() - self.start

    def __call__(self, message: str) -> None:
        minutes, seconds = divmod(int(self.elapsed), 60)
        print(f"[{minutes:2d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (default 3)")
    parser.add_argument(
        "--events", type=int, help=f"pre-published events per run ({FULL['events']})"
    )
    parser.add_argument(
        "--soak-minutes", type=float, help=f"soak at 80%% load ({FULL['soak_minutes']:g})"
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        help=f"length of each steady phase ({FULL['latency_seconds']:g})",
    )
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--session-timeout",
        type=float,
        help=f"CRM_SESSION_TIMEOUT of every worker ({FULL['session_timeout']:g})",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--soak-load",
        type=float,
        default=0.8,
        help="soak rate as a share of the measured one-worker maximum (0.8)",
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=15.0,
        help="shorten the soak so the whole benchmark ends within this (0: no limit)",
    )
    parser.add_argument(
        "--checkpoint",
        action=argparse.BooleanOptionalAction,
        help="run bench/checkpoint.py --json if it exists (default: yes, no with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 1-2 minutes")
    parser.add_argument("--json", type=Path, default=HERE / "out" / "mixed.json")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


class Bench:
    """The runs of one benchmark, and what they measured so far."""

    def __init__(self, args: argparse.Namespace, say: Progress) -> None:
        self.args = args
        self.say = say
        self.pools = load_pools()
        self.env = {
            "CRM_PARTITIONS": str(args.partitions),
            "CRM_SESSION_TIMEOUT": f"{args.session_timeout:g}",
        }
        # The worker adds to its stage counters at every checkpoint.
        settings = Settings()
        self.stage_flush = getattr(settings, "checkpoint_interval", 10.0) + 1.5
        self.keeps_stages = True
        self.drains: list[Drain] = []
        self.phases: list[dict[str, Any]] = []
        self.soak: dict[str, Any] | None = None

    def crmstream_rate(self) -> float:
        """The median one-worker crmstream throughput so far: the "maximum rate"."""
        rates = [d.rate for d in self.drains if d.kind == "crmstream" and d.workers == 1]
        return float(summary(rates)["median"])  # type: ignore[index]

    def run(self, run: int, soak: bool) -> None:
        """One interleaved run on a fresh stack; the last one ends with the soak."""
        args, say = self.args, self.say
        with BenchStack(args.partitions) as stack:
            workload = MixedWorkload(self.pools, customers=args.customers, seed=args.seed)
            seconds = stack.publish(workload.events(args.events))
            say(f"run {run}: published {workload.published} in {seconds:.1f} s")
            two = [("faust", 2), ("crmstream", 2)]
            # The one-worker crmstream drain comes last: its worker goes on with steady load.
            order = [*(two if run % 2 else two[::-1]), ("faust", 1), ("crmstream", 1)]
            for kind, n in order:
                if kind == "crmstream":
                    stack.reset_profiles()
                with workers(stack, kind, n, f"bench-{kind}-{n}w-r{run}", **self.env) as running:
                    # Waiting for the stage counters costs up to a flush interval: in a
                    # quick benchmark, only the first run does.
                    stages = (kind, n) == ("crmstream", 1) and (run == 1 or not args.quick)
                    stage_flush = self.stage_flush if stages and self.keeps_stages else 0.0
                    result = drain(stack, running, workload, stage_flush)
                    self.drains.append(result)
                    if stage_flush:  # a worker that kept no stage counters keeps none
                        self.keeps_stages = result.stages_us is not None
                    shares = "/".join(f"{s:.0%}" for s in result.cpu_share)
                    say(
                        f"run {run}: {kind} ×{n} drained {result.events:,} events in "
                        f"{result.seconds:.1f} s: {result.rate:,.0f} events/s, "
                        f"{result.cpu_us:,.0f} µs CPU/event (CPU split {shares}; "
                        f"joined after {result.start_seconds:.1f} s)"
                    )
                    if kind == "crmstream" and n == 1:
                        self.latency(run, stack, running, workload)
                        if soak:
                            self.soak = self.soak_on(stack, running, workload)

    def latency(
        self, run: int, stack: BenchStack, running: Workers, workload: MixedWorkload
    ) -> None:
        """Steady traffic at each of :data:`LOADS` times the maximum rate on a warm worker."""
        max_rate = self.crmstream_rate()
        seconds = self.args.latency_seconds
        with alert_clock(stack) as clock:
            for load in LOADS:
                meter = CpuMeter(stack, running)
                sent = publish_steady(stack, workload, load * max_rate, seconds, PROBE_EVERY)
                busy = meter.busy()
                catch_up, behind = wait_applied(stack, running, workload, timeout=15)
                time.sleep(0.3)  # the last alerts on their way
                phase = {
                    "run": run,
                    "load": load,
                    "rate": sent.events / seconds,
                    "cpu_busy": busy,
                    "catch_up_seconds": catch_up,
                    "behind_after_catch_up": behind,
                    **latencies(sent, dict(clock.arrived)),
                }
                self.phases.append(phase)
                self.say(
                    f"run {run}: {load:.0%} load, {phase['rate']:,.0f} events/s: alert p50 "
                    f"{phase['p50']:,.0f} ms, p99 {phase['p99']:,.0f} ms "
                    f"({phase['alerts_seen']}/{phase['alerts_expected']} alerts); CPU busy "
                    f"{busy}; caught up {catch_up:.1f} s after publishing stopped"
                )

    def soak_seconds(self) -> float:
        """``--soak-minutes``, shortened to end within ``--budget-minutes``."""
        args = self.args
        planned = args.soak_minutes * 60
        if args.budget_minutes <= 0:
            return planned
        left = args.budget_minutes * 60 - self.say.elapsed - SOAK_RESERVE
        if left < planned:
            self.say(
                f"soak shortened from {args.soak_minutes:g} to {max(left, 0) / 60:.1f} min "
                f"to end within --budget-minutes {args.budget_minutes:g}"
            )
        return max(0.0, min(planned, left))

    def soak_on(
        self, stack: BenchStack, running: Workers, workload: MixedWorkload
    ) -> dict[str, Any] | None:
        """Steady load (``--soak-load`` of the maximum, 80%) on the warm worker: RSS at the
        start and the end, latency, lag."""
        seconds = self.soak_seconds()
        if seconds < 5:
            return None
        rate = self.args.soak_load * self.crmstream_rate()
        say = self.say
        rss_warm = running.rss_mb()[0]
        say(f"soak: RSS {rss_warm:.0f} MB after warm-up; {seconds / 60:.1f} min at {rate:,.0f}/s")
        samples: list[dict[str, float]] = []
        every = max(5.0, seconds / 20)

        def applied() -> int:
            return sum(stack.applied(running.kind, running.group, workload).values())

        def sample(elapsed: float) -> None:
            # The lag from committed offsets: counting the profiles would block Redis for
            # longer and longer as probes add customers.
            if samples and elapsed - samples[-1]["seconds"] < every:
                return
            lag, rss = stack.lag(running.group), running.rss_mb()[0]
            samples.append({"seconds": round(elapsed, 1), "rss_mb": rss, "lag": lag})
            say(f"soak: {elapsed / 60:4.1f} min, RSS {rss:.0f} MB, committed-offset lag {lag:,}")

        with alert_clock(stack) as clock:
            applied0, cpu0, stages0 = applied(), running.cpu_seconds()[0], stack.stages()
            start = time.perf_counter()
            meter = CpuMeter(stack, running)
            sent = publish_steady(stack, workload, rate, seconds, PROBE_EVERY, on_second=sample)
            busy = meter.busy()
            rss_end = running.rss_mb()[0]
            catch_up, behind = wait_applied(stack, running, workload, timeout=20)
            consumed = applied() - applied0
            cpu_us = (running.cpu_seconds()[0] - cpu0) / max(consumed, 1) * 1e6
            consumed_rate = consumed / (time.perf_counter() - start)
            stages = stage_costs(stages0, stack.stages())
            time.sleep(0.3)
            latency = latencies(sent, dict(clock.arrived))
        say(
            f"soak: RSS {rss_end:.0f} MB at the end; applied {consumed_rate:,.0f} events/s at "
            f"{cpu_us:,.0f} µs CPU/event; alert p50 {latency['p50']:,.0f} ms, p99 "
            f"{latency['p99']:,.0f} ms; {behind:,} events behind 20 s after publishing; CPU "
            f"busy {busy} (the broker's grows with the events it stores: see the README)"
        )
        return {
            "minutes": seconds / 60,
            "minutes_planned": self.args.soak_minutes,
            "rate": rate,
            "load": self.args.soak_load,
            "events": sent.events,
            "rss_warm_mb": rss_warm,
            "rss_end_mb": rss_end,
            "rss_growth_pct": (rss_end / rss_warm - 1) * 100,
            "cpu_busy": busy,
            "applied_rate": consumed_rate,
            "cpu_us_per_event": cpu_us,
            "stages_us_per_event": stages,
            "catch_up_seconds": catch_up,
            "behind_after_catch_up": behind,
            "latency": latency,
            "samples": samples,
        }


@contextlib.contextmanager
def alert_clock(stack: BenchStack) -> Iterator[AlertClock]:
    """An :class:`AlertClock` noting alert arrivals on the stack while the block runs."""
    clock = AlertClock(stack.bootstrap)
    clock.start()
    clock.ready.wait(30)
    try:
        yield clock
    finally:
        clock.stopped.set()
        clock.join(5)


def run_checkpoint_bench(say: Progress, timeout: float) -> Any:
    """The output of ``bench/checkpoint.py --json``, or ``None`` if there is no such script."""
    script = HERE / "checkpoint.py"
    if not script.is_file():
        say("bench/checkpoint.py does not exist: checkpoint row n/a")
        return None
    say("running bench/checkpoint.py --json")
    try:
        done = subprocess.run(
            [sys.executable, str(script), "--json"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"output": done.stdout.strip()[-500:]}


def summarise(
    args: argparse.Namespace,
    settings: Settings,
    drains: list[Drain],
    phases: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON document: per-run figures and their summaries."""

    def pick(kind: str, n: int) -> list[Drain]:
        return [d for d in drains if d.kind == kind and d.workers == n]

    crm, faust = pick("crmstream", 1), pick("faust", 1)
    crm2, faust2 = pick("crmstream", 2), pick("faust", 2)
    throughput: dict[str, dict[str, Any]] = {"crmstream": {}, "faust": {}, "ratio": {}}
    for key in ("all", *TOPICS):

        def rates(runs: list[Drain], key: str = key) -> list[float]:
            return [d.rate if key == "all" else d.topic_rates[key] for d in runs]

        throughput["crmstream"][key] = summary(rates(crm))
        throughput["faust"][key] = summary(rates(faust))
        throughput["ratio"][key] = ratios(rates(crm), rates(faust))
    stage_runs = [d.stages_us for d in crm if d.stages_us is not None]
    stages = None
    if stage_runs:
        stages = {s: summary(r.get(s, math.nan) for r in stage_runs) for s in STAGES}
    crm_scaling = ratios([d.rate for d in crm2], [d.rate for d in crm])
    faust_scaling = ratios([d.rate for d in faust2], [d.rate for d in faust])
    per_run_crm = [b.rate / a.rate for a, b in zip(crm, crm2, strict=True)]
    per_run_faust = [b.rate / a.rate for a, b in zip(faust, faust2, strict=True)]
    latency = {}
    for load in LOADS:
        at = [p for p in phases if p["load"] == load]
        latency[f"{load:.0%}"] = {
            "rate": summary(p["rate"] for p in at),
            "p50": summary(p["p50"] for p in at),
            "p99": summary(p["p99"] for p in at),
            "worker_busy": summary(p["cpu_busy"]["worker"] for p in at),
            "catch_up_seconds": summary(p["catch_up_seconds"] for p in at),
            "alerts_seen": sum(p["alerts_seen"] for p in at),
            "alerts_expected": sum(p["alerts_expected"] for p in at),
        }
    return {
        "config": {
            "events": args.events,
            "runs": args.runs,
            "customers": args.customers,
            "partitions": args.partitions,
            "seed": args.seed,
            "quick": args.quick,
            "session_timeout": args.session_timeout,
            "batch_size": settings.batch_size,
            "batch_wait": settings.batch_wait,
            "fetch_max_wait": settings.fetch_max_wait,
            "latency_seconds": args.latency_seconds,
            "probe_every": PROBE_EVERY,
        },
        "worker_code": worker_code(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "throughput": throughput,
        "cpu_us_per_event": {
            "crmstream": summary(d.cpu_us for d in crm),
            "faust": summary(d.cpu_us for d in faust),
            "ratio": ratios([d.cpu_us for d in crm], [d.cpu_us for d in faust]),
        },
        "stage_names": list(STAGES),
        "stages_us_per_event": stages,
        "latency_ms": latency,
        "scaling": {
            "crmstream": {
                "one": summary(d.rate for d in crm),
                "two": summary(d.rate for d in crm2),
                "ratio": crm_scaling,
            },
            "faust": {
                "one": summary(d.rate for d in faust),
                "two": summary(d.rate for d in faust2),
                "ratio": faust_scaling,
            },
            "ratio_of_ratios": ratios(per_run_crm, per_run_faust),
        },
        "runs": {"drains": [asdict(d) for d in drains], "latency": phases},
    }


def worker_code() -> dict[str, Any]:
    """Where the worker's code came from: its package directory, and the git commit and
    whether the working tree differs from it, when it is a checkout."""
    import crmstream.streams

    root = Path(crmstream.streams.__file__).resolve().parent.parent
    code: dict[str, Any] = {"path": str(root)}
    git = ["git", "-C", str(root)]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "schemas", "models", "streams", "agents"],
            capture_output=True,
            text=True,
        )
    except OSError:
        return code
    if commit.returncode == 0:
        code["commit"] = commit.stdout.strip()
        code["dirty"] = bool(status.stdout.strip())
    return code


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    say = Progress()
    bench = Bench(args, say)
    say(f"texts: {describe(bench.pools)}")
    checkpoint = run_checkpoint_bench(say, timeout=300) if args.checkpoint else None
    for run in range(1, args.runs + 1):
        bench.run(run, soak=run == args.runs)
    settings = Settings(partitions=args.partitions, session_timeout=args.session_timeout)
    results = summarise(args, settings, bench.drains, bench.phases)
    results["soak"] = bench.soak
    results["checkpoint"] = checkpoint
    results["elapsed_seconds"] = say.elapsed
    args.json.parent.mkdir(parents=True, exist_ok=True)
    results = finite(results)
    args.json.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    # A terminal wraps a wide table itself; a file or pipe gets it whole.
    Console(width=None if sys.stdout.isatty() else 180).print(table(results))
    say(f"done in {say.elapsed / 60:.1f} min; figures in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
