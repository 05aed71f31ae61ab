"""Summaries and the table of ``bench/mixed.py``: medians with min and max over runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from mixed_workload import TOPICS
from rich.table import Table

Summary = dict[str, Any]


def summary(values: Iterable[float]) -> Summary | None:
    """Median, min and max of the finite values, with the values (``None`` if none).

    Examples
    --------
    >>> summary([3.0, 1.0, 2.0])
    {'median': 2.0, 'min': 1.0, 'max': 3.0, 'values': [3.0, 1.0, 2.0]}
    >>> summary([float("nan")]) is None
    True
    """
    kept = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not kept:
        return None
    return {
        "median": statistics.median(kept),
        "min": min(kept),
        "max": max(kept),
        "values": kept,
    }


def ratios(numerators: list[float], denominators: list[float]) -> Summary | None:
    """Summary of the per-run ratios ``numerators[i] / denominators[i]``."""
    return summary(n / d for n, d in zip(numerators, denominators, strict=True) if d)


def fmt(s: Summary | None, digits: int = 0, unit: str = "") -> str:
    """``median (min–max)``, or ``n/a``.

    Examples
    --------
    >>> fmt({"median": 1234.4, "min": 1200.0, "max": 1300.0})
    '1,234 (1,200–1,300)'
    >>> fmt({"median": 1.234, "min": 1.2, "max": 1.3}, 2, "×")
    '1.23× (1.20–1.30)'
    >>> fmt(None)
    'n/a'
    """
    if s is None:
        return "n/a"
    if s["min"] == s["max"]:
        return f"{s['median']:,.{digits}f}{unit}"
    return f"{s['median']:,.{digits}f}{unit} ({s['min']:,.{digits}f}–{s['max']:,.{digits}f})"


def number(value: float | None, spec: str = ",.0f", unit: str = "") -> str:
    """One figure, or ``n/a`` for a missing one.

    Examples
    --------
    >>> number(1234.5), number(None), number(12.34, "+.1f", "%")
    ('1,234', 'n/a', '+12.3%')
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:{spec}}{unit}"


def _short(topic: str) -> str:
    return topic.removeprefix("crm.")


def table(results: dict[str, Any]) -> Table:
    """The benchmark's figures as one rich table."""
    config = results["config"]
    out = Table(
        title=(
            f"crmstream mixed stream: {config['events']:,} events of {config['customers']:,} "
            f"customers, {config['partitions']} partitions; median (min–max) of "
            f"{config['runs']} interleaved runs"
        ),
        title_justify="left",
    )
    out.add_column("measure", no_wrap=True)
    out.add_column("crmstream", justify="right", no_wrap=True)
    out.add_column("bare Faust", justify="right", no_wrap=True)
    out.add_column("crmstream / Faust", justify="right", no_wrap=True)

    throughput = results["throughput"]
    for key in ("all", *TOPICS):
        label = "events/s, all topics" if key == "all" else f"  events/s, {_short(key)}"
        out.add_row(
            label,
            fmt(throughput["crmstream"].get(key)),
            fmt(throughput["faust"].get(key)),
            fmt(throughput["ratio"].get(key), 3, "×"),
        )
    cpu = results["cpu_us_per_event"]
    out.add_row(
        "worker CPU µs/event",
        fmt(cpu["crmstream"]),
        fmt(cpu["faust"], 1),
        fmt(cpu["ratio"], 1, "×"),
        end_section=True,
    )

    stages = results["stages_us_per_event"]
    for stage in results["stage_names"]:
        value = fmt(stages.get(stage), 1) if stages else "n/a"
        out.add_row(f"  CPU µs/event in {stage}", value, "", "")
    out.rows[-1].end_section = True

    for load, figures in results["latency_ms"].items():
        out.add_row(f"steady {load} load, events/s published", fmt(figures["rate"]), "", "")
        out.add_row(
            "  publish→alert ms, p50 / p99",
            f"{fmt(figures['p50'])} / {fmt(figures['p99'])}",
            "",
            f"{figures['alerts_seen']:,}/{figures['alerts_expected']:,} alerts",
        )
        out.add_row("  worker CPU busy, cores", fmt(figures["worker_busy"], 2), "", "")
    out.rows[-1].end_section = True

    scaling = results["scaling"]
    out.add_row(
        "events/s, 2 workers / 1 worker",
        fmt(scaling["crmstream"]["ratio"], 2, "×"),
        fmt(scaling["faust"]["ratio"], 2, "×"),
        fmt(scaling["ratio_of_ratios"], 2, "×"),
    )
    out.add_row(
        "  events/s with 2 workers",
        fmt(scaling["crmstream"]["two"]),
        fmt(scaling["faust"]["two"]),
        "",
        end_section=True,
    )

    soak = results["soak"]
    if soak is None:
        out.add_row("soak: worker RSS MB after warm-up → end", "n/a", "", "")
    else:
        out.add_row(
            f"soak: {soak['minutes']:.1f} min at {soak.get('load', 0.8):.0%} load, events/s",
            number(soak["rate"]),
            "",
            "",
        )
        out.add_row(
            "  worker RSS MB after warm-up → end",
            f"{number(soak['rss_warm_mb'])} → {number(soak['rss_end_mb'])}",
            "",
            number(soak["rss_growth_pct"], "+.1f", "%"),
        )
        out.add_row(
            "  events/s applied; worker CPU µs/event",
            f"{number(soak['applied_rate'])}; {number(soak['cpu_us_per_event'])}",
            "",
            "",
        )
        latency = soak["latency"]
        behind = soak["behind_after_catch_up"]
        out.add_row(
            "  publish→alert ms, p50 / p99",
            f"{number(latency['p50'])} / {number(latency['p99'])}",
            "",
            f"{behind:,} behind at the end"
            if behind
            else f"caught up {number(soak['catch_up_seconds'], '.1f')} s after",
        )
    out.rows[-1].end_section = True

    checkpoint = results["checkpoint"]
    if checkpoint is None:
        out.add_row("checkpoint size/time at 10k and 100k customers", "n/a", "", "")
    else:
        for label, value in checkpoint_rows(checkpoint):
            out.add_row(f"checkpoint, {label}", value, "", "")
    return out


def checkpoint_rows(checkpoint: Any) -> list[tuple[str, str]]:
    """Whatever ``bench/checkpoint.py --json`` printed, one row per top-level key.

    Examples
    --------
    >>> checkpoint_rows({"10000": {"bytes": 397274, "seal_ms": 8.31}, "ratio": 1.0})
    [('10000', 'bytes=397,274 seal_ms=8.31'), ('ratio', '1.0')]
    >>> checkpoint_rows("odd output")
    [('output', 'odd output')]
    """
    if not isinstance(checkpoint, dict):
        return [("output", str(checkpoint))]

    def text(value: Any) -> str:
        if isinstance(value, dict):
            return " ".join(f"{k}={text(v)}" for k, v in value.items())
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    return [(str(key), text(value)) for key, value in checkpoint.items()]
