"""Compare candidate expression languages for marketing rules: µs per evaluation.

Candidates: CEL through the Rust-backed ``common-expression-language`` bindings (module
``cel``), CEL in pure Python (``cel-python``, module ``celpy``) and ``rule-engine``. Each
compiles one representative rule once, then evaluates it on a prepared context. They are
not dependencies of crmstream (only the chosen one is); install the others to run this::

    .venv/bin/pip install cel-python rule-engine
    .venv/bin/python bench/rules_languages.py

It also prints each candidate's error message for a syntax error, an unknown variable and
a type error, and whether the language can reach Python (attributes, imports, files).
"""

from __future__ import annotations

import time
from collections.abc import Callable

EVENT = {"type": "purchase", "amount": 150.0, "currency": "USD"}
BEFORE = {"orders": 0, "tier": "bronze", "revenue": 0.0}
AFTER = {"orders": 1, "tier": "silver", "revenue": 150.0}
TRAITS = {"d30": {"orders": 1, "revenue": 150.0}}
CONTEXT = {"event": EVENT, "before": BEFORE, "after": AFTER, "traits": TRAITS}
RULE = (
    'event.amount > 100.0 && before.orders == 0 && after.tier in ["silver", "gold"]'
    " && traits.d30.revenue >= 100.0"
)
PROBLEMS = {
    "syntax": "event.amount > ",
    "unknown variable": "evnt.amount > 100.0",
    "type error": 'event.amount + "x" > 1.0',
    "python escape": 'event.__class__.__name__ == "dict"',
}


def per_call_us(call: Callable[[], object], seconds: float = 1.0) -> float:
    """Mean µs of ``call`` over about ``seconds`` of repeated calls."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            call()
        n += 200
    return (time.perf_counter() - start) / n * 1e6


def cel_rust() -> tuple[Callable[[], object], Callable[[str], object]]:
    import cel

    program = cel.compile(RULE)

    def check(source: str) -> object:
        return cel.compile(source).execute(CONTEXT)

    return (lambda: program.execute(CONTEXT)), check


def cel_python() -> tuple[Callable[[], object], Callable[[str], object]]:
    import celpy

    env = celpy.Environment()
    program = env.program(env.compile(RULE))
    activation = {name: celpy.json_to_cel(value) for name, value in CONTEXT.items()}

    def check(source: str) -> object:
        return env.program(env.compile(source)).evaluate(activation)

    return (lambda: program.evaluate(activation)), check


def rule_engine() -> tuple[Callable[[], object], Callable[[str], object]]:
    import rule_engine as engine

    mapping = engine.DataType.MAPPING(engine.DataType.STRING)
    context = engine.Context(
        type_resolver=engine.type_resolver_from_dict({name: mapping for name in CONTEXT})
    )
    source = RULE.replace("&&", "and").replace("100.0", "100")
    rule = engine.Rule(source, context=context)

    def check(text: str) -> object:
        text = text.replace("&&", "and")
        return engine.Rule(text, context=context).evaluate(CONTEXT)

    return (lambda: rule.matches(CONTEXT)), check


def main() -> None:
    for name, build in [
        ("CEL, common-expression-language (Rust)", cel_rust),
        ("CEL, cel-python (pure Python)", cel_python),
        ("rule-engine (pure Python)", rule_engine),
    ]:
        try:
            evaluate, check = build()
        except ImportError as exc:
            print(f"{name}: not installed ({exc})")
            continue
        print(f"{name}: {per_call_us(evaluate):.1f} µs per evaluation")
        for problem, source in PROBLEMS.items():
            try:
                outcome = f"evaluates to {check(source)!r}"
            except Exception as exc:
                message = " ".join(str(exc).split())[:160]
                outcome = f"{type(exc).__name__}: {message}"
            print(f"  {problem:17} {outcome}")


if __name__ == "__main__":
    main()
