"""Marketing rules: a declarative YAML file of sandboxed expressions that fire triggers.

A rule file looks like this (``examples/rules.yaml`` has the shipped examples)::

    rules:
      - id: first-big-purchase
        description: A first purchase over 100
        on: [purchase]
        when: before.orders == 0 && event.amount > 100.0
        emit: {campaign: welcome-vip, amount: "{{ event.amount }}"}
        once_per: customer
        holdout: 0.1
        channel: email

``when`` and the ``{{ ... }}`` parts of ``emit`` are CEL expressions (Common Expression
Language, evaluated by the Rust-backed ``common-expression-language`` bindings). CEL
cannot call into Python, has no loops beyond its comprehension macros (which are refused
here), and each expression is bounded in length, tokens and nesting: evaluation costs
at most a linear function of the expression's size. Nothing is ever passed to Python's
``eval`` or ``exec``.

An expression sees four variables:

* ``event``: the event (:data:`EVENT_FIELDS`: money in the base currency, a chat
  message's ``sentiment`` and ``intent``);
* ``before`` and ``after``: the customer's profile before and after the event
  (:data:`PROFILE_FIELDS`);
* ``traits``: windowed traits, ``traits.d7``, ``traits.d30`` and ``traits.d90``
  (:data:`~crmstream.models.traits.WINDOW_FIELDS`), and ``traits.avg_30d_revenue``.

A file is validated as a whole when it is loaded (:func:`load_rules`): unknown fields,
unknown variables and fields, disallowed functions, syntax errors and type errors (each
expression is evaluated on typed sample values of every event type it applies to) are
all reported at once, each naming the rule, the field and the position.

Firing (:func:`fire`) is pure: it returns the customer's new profile, whose
``rules_fired`` carries the ``once_per`` and ``cooldown`` state, and the
:class:`~crmstream.schemas.outputs.Trigger` records, with deterministic ids. A rule with
a ``channel`` (``email``, ``sms``, ``phone``, ``push`` or ``post``) fires only for
customers whose latest marketing consent to that channel is granted (``crm.customers``):
for the others it is not evaluated, and its trigger is not emitted. A rule with
a ``holdout`` fraction puts that share of customers, chosen by a hash of the rule id and
the customer id, in a control group: their triggers carry ``holdout: true``.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cel
import msgspec
import yaml

from crmstream.models.redaction import redact
from crmstream.models.traits import WINDOW_FIELDS, WINDOWS, window_traits
from crmstream.schemas.inputs import CHANNELS, ChatMessage, Feedback, Purchase
from crmstream.schemas.outputs import AudienceChange, Scalar, Trigger, deterministic_id

if TYPE_CHECKING:  # the profile module loads the purchase models' state (and River)
    from crmstream.models.profile import Profile

#: Longest expression, in characters; most tokens and deepest nesting of one expression.
MAX_EXPRESSION_CHARS = 1000
MAX_EXPRESSION_TOKENS = 250
MAX_NESTING = 24
#: Largest rule file, in bytes, and most rules in one file.
MAX_FILE_BYTES = 1 << 20
MAX_RULES = 500

#: Event types a rule can be ``on``, by input record type.
EVENT_TYPES: dict[type, str] = {Purchase: "purchase", ChatMessage: "chat", Feedback: "feedback"}

# A field's type and whether it may be null. Types are the Python types CEL sees.
Field = tuple[type, bool]

_COMMON: dict[str, Field] = {"type": (str, False), "event_id": (str, False)}
#: The fields of ``event``, per event type.
EVENT_FIELDS: dict[str, dict[str, Field]] = {
    "purchase": {
        **_COMMON,
        "amount": (float, False),
        "cost": (float, False),
        "currency": (str, False),
        "order_id": (str, True),
        "items": (int, False),
    },
    "chat": {
        **_COMMON,
        "conversation_id": (str, False),
        "channel": (str, False),
        "text": (str, False),
        "sentiment": (float, False),
        "intent": (str, False),
    },
    "feedback": {
        **_COMMON,
        "rating": (int, True),
        "nps": (int, True),
        "text": (str, True),
        "order_id": (str, True),
    },
}
#: The fields of ``before`` and ``after``. ``days_since_*`` are measured at the event.
PROFILE_FIELDS: dict[str, Field] = {
    "customer_id": (str, False),
    "orders": (int, False),
    "revenue": (float, False),
    "cost": (float, False),
    "clv": (float, False),
    "tier": (str, False),
    "tier_rank": (int, False),
    "messages": (int, False),
    "feedback": (int, False),
    "last_rating": (int, True),
    "last_nps": (int, True),
    "last_sentiment": (float, True),
    "sentiment_avg": (float, True),
    "negative_streak": (int, False),
    "last_intent": (str, True),
    "purchase_propensity": (float, True),
    "segment": (int, True),
    "last_purchase_anomaly": (float, True),
    "predicted_revenue": (float, True),
    "predicted_clv": (float, True),
    "days_since_first_purchase": (float, True),
    "days_since_last_purchase": (float, True),
    "next_best_offer": (str, True),
    "next_best_offer_reason": (str, True),
}
TIER_RANK = {"bronze": 0, "silver": 1, "gold": 2, "platinum": 3}
#: ``traits``: one mapping per window, and the usual 30-day spend.
TRAIT_FIELDS: dict[str, Field | dict[str, Field]] = {
    **{f"d{w}": {name: (kind, False) for name, kind in WINDOW_FIELDS.items()} for w in WINDOWS},
    "avg_30d_revenue": (float, False),
}
ROOTS = ("event", "before", "after", "traits")
_ALL_EVENT_FIELDS: dict[str, Field] = {k: v for f in EVENT_FIELDS.values() for k, v in f.items()}
_SCHEMA: dict[str, Any] = {
    "before": PROFILE_FIELDS,
    "after": PROFILE_FIELDS,
    "traits": TRAIT_FIELDS,
}

#: Functions an expression may call (CEL's standard ones that cost O(their input)).
GLOBAL_FUNCTIONS = frozenset(
    {"size", "int", "uint", "double", "string", "bool", "matches", "max", "min"}
)
METHODS = frozenset({"startsWith", "endsWith", "contains", "matches", "size"})
#: CEL's comprehension macros: refused, their cost depends on the data they iterate.
COMPREHENSIONS = frozenset({"map", "filter", "all", "exists", "exists_one"})
_KEYWORDS = frozenset({"true", "false", "null", "in"})

RULE_FIELDS = (
    "id",
    "description",
    "on",
    "when",
    "emit",
    "once_per",
    "cooldown",
    "holdout",
    "channel",
)
AUDIENCE_FIELDS = ("id", "description", "when")
#: What an audience's ``when`` sees: membership is a state of the customer, not of an event.
AUDIENCE_ROOTS = ("after", "traits")
FILE_FIELDS = ("rules", "audiences")
ONCE_PER = ("customer", "customer+day", "customer+week", "customer+month")
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)


class RuleProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One thing wrong with a rule file.

    ``line`` and ``column`` (1-based) locate the offending value in the file;
    ``position`` (1-based), when set, is the character of the expression at fault.
    """

    code: str
    message: str
    rule: str | None = None
    field: str | None = None
    line: int | None = None
    column: int | None = None
    position: int | None = None

    def describe(self, source: str) -> str:
        where = source
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        what = []
        if self.rule is not None:
            what.append(f"rule {self.rule!r}")
        if self.field is not None:
            what.append(f"field {self.field!r}")
        if self.position is not None:
            what.append(f"expression position {self.position}")
        head = f"{where}: {', '.join(what)}: " if what else f"{where}: "
        return f"{head}{self.message} [{self.code}]"


class RuleFileError(ValueError):
    """A rule file that cannot be used; ``problems`` lists everything wrong with it."""

    def __init__(self, source: str, problems: list[RuleProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.describe(source) for p in problems))

    def to_dict(self) -> dict[str, Any]:
        """The problems as JSON-ready data (for ``--json`` and logs)."""
        return {
            "source": self.source,
            "problems": [msgspec.structs.asdict(p) for p in self.problems],
        }


@dataclass(frozen=True)
class Expression:
    """A validated CEL expression, compiled on flat variables (see :func:`flat_name`);
    ``paths`` are the field paths it reads."""

    source: str
    program: Any  # cel.Program
    paths: frozenset[str]

    def run(self, context: Any) -> Any:
        return self.program.execute(context)


@dataclass(frozen=True)
class Template:
    """An ``emit`` value: a literal, or a string with ``{{ expression }}`` parts."""

    literal: Scalar = None
    parts: tuple[str | Expression, ...] = ()

    @property
    def paths(self) -> frozenset[str]:
        return frozenset().union(*(p.paths for p in self.parts if isinstance(p, Expression)))

    def render(self, context: Any) -> Scalar:
        if not self.parts:
            return self.literal
        if len(self.parts) == 1 and isinstance(self.parts[0], Expression):
            return _scalar(self.parts[0].run(context))
        return "".join(
            part if isinstance(part, str) else _text(_scalar(part.run(context)))
            for part in self.parts
        )


@dataclass(frozen=True)
class Rule:
    """One validated rule (see the module)."""

    id: str
    description: str
    on: frozenset[str]
    when: Expression
    emit: dict[str, Template]
    once_per: str | None = None
    cooldown: timedelta | None = None
    holdout: float = 0.0
    channel: str | None = None

    @property
    def paths(self) -> frozenset[str]:
        return self.when.paths.union(*(t.paths for t in self.emit.values()))


@dataclass(frozen=True)
class Audience:
    """A named set of customers: those for whom ``when`` holds after their latest event.

    ``when`` sees ``after`` and ``traits`` only."""

    id: str
    description: str
    when: Expression


@dataclass(frozen=True)
class RuleSet:
    """A loaded rule file: its rules, indexed by the event types they apply to, and its
    audiences (evaluated on every event).

    ``version`` is a digest of the file's text. ``errors`` counts, per rule or audience,
    evaluations that failed at run time (e.g. a comparison with a null field): the rule
    did not fire, the audience membership did not change.
    """

    rules: tuple[Rule, ...]
    audiences: tuple[Audience, ...] = ()
    source: str = "<rules>"
    version: str = ""
    errors: Counter[str] = field(default_factory=Counter, compare=False)
    by_type: dict[str, tuple[Rule, ...]] = field(init=False, compare=False)
    paths: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = field(
        init=False, compare=False
    )
    windows: dict[str, tuple[int, ...]] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        by_type = {t: tuple(r for r in self.rules if t in r.on) for t in EVENT_FIELDS}
        object.__setattr__(self, "by_type", by_type)
        paths = {}
        audience_paths = frozenset().union(*(a.when.paths for a in self.audiences))
        for kind, rules in by_type.items():
            read = sorted(audience_paths.union(*(r.paths for r in rules)))
            paths[kind] = tuple((flat_name(p), *_split(p)) for p in read)
        object.__setattr__(self, "paths", paths)
        windows = {
            kind: tuple(w for w in WINDOWS if any(p[2][:1] == (f"d{w}",) for p in read))
            for kind, read in paths.items()
        }
        object.__setattr__(self, "windows", windows)

    @property
    def reads_recommendations(self) -> bool:
        """Whether a rule or audience reads ``next_best_offer`` (or its reason): the fold
        then scores a customer's recommendations at each purchase with items."""
        return any(
            rest[:1] in (("next_best_offer",), ("next_best_offer_reason",))
            for read in self.paths.values()
            for _, _, rest in read
        )


def _split(path: str) -> tuple[str, tuple[str, ...]]:
    root, *rest = path.split(".")
    return root, tuple(rest)


# ---------------------------------------------------------------------------- loading


def load_rules_file(path: str | Path) -> RuleSet:
    """Load and validate a rule file; raise :class:`RuleFileError` if it is not usable."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RuleFileError(source, [RuleProblem(code="unreadable", message=str(exc))]) from None
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        problem = RuleProblem(code="encoding", message=f"not UTF-8: {exc}")
        raise RuleFileError(source, [problem]) from None
    return load_rules(text, source)


def load_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Parse and validate the text of a rule file.

    Raises
    ------
    RuleFileError
        With every problem found, each naming the rule, the field and the position.

    Examples
    --------
    >>> rules = load_rules('''
    ... rules:
    ...   - id: big-spender
    ...     on: purchase
    ...     when: event.amount > 100.0
    ... ''')
    >>> [rule.id for rule in rules.rules]
    ['big-spender']
    >>> try:
    ...     load_rules('''
    ... rules:
    ...   - id: typo
    ...     on: purchase
    ...     when: event.amout > 100.0
    ... ''')
    ... except RuleFileError as error:
    ...     problem = error.problems[0]
    >>> problem.code, problem.rule, problem.field, problem.line, problem.column, problem.position
    ('unknown_field', 'typo', 'when', 5, 11, 7)
    >>> print(problem.message)
    event has no field 'amout' for purchase events (its fields: amount, cost, ...)
    """
    if len(text.encode()) > MAX_FILE_BYTES:
        message = f"the file is larger than {MAX_FILE_BYTES} bytes"
        raise RuleFileError(source, [RuleProblem(code="too_large", message=message)])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = RuleProblem(
            code="yaml_syntax",
            message=" ".join(str(getattr(exc, "problem", None) or exc).split()),
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        )
        raise RuleFileError(source, [problem]) from None
    problems: list[RuleProblem] = []
    rules, audiences = _file(root, problems)
    if problems:
        raise RuleFileError(source, problems)
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return RuleSet(tuple(rules), tuple(audiences), source=source, version=version)


def _at(node: yaml.Node) -> dict[str, int]:
    return {"line": node.start_mark.line + 1, "column": node.start_mark.column + 1}


def _value(node: yaml.Node) -> Any:
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _file(root: yaml.Node | None, problems: list[RuleProblem]) -> tuple[list[Rule], list[Audience]]:
    if root is None:
        problems.append(RuleProblem(code="empty", message="the file is empty; expected 'rules:'"))
        return [], []
    if not isinstance(root, yaml.MappingNode):
        problems.append(
            RuleProblem(
                code="not_a_mapping", message="expected a mapping with 'rules:'", **_at(root)
            )
        )
        return [], []
    entries = _mapping(root, FILE_FIELDS, None, problems)
    if not entries and not problems:
        problems.append(
            RuleProblem(code="missing_field", message="'rules' is required", **_at(root))
        )
        return [], []
    rules: list[Rule] = []
    seen: set[str] = set()
    for item in _items(entries, "rules", problems):
        rule = _rule(item, problems)
        if rule is not None:
            _unique(rule.id, seen, item, problems)
            rules.append(rule)
    audiences: list[Audience] = []
    seen = set()
    for item in _items(entries, "audiences", problems):
        audience = _audience(item, problems)
        if audience is not None:
            _unique(audience.id, seen, item, problems)
            audiences.append(audience)
    if "rules" not in entries and "audiences" not in entries:
        problems.append(
            RuleProblem(code="missing_field", message="'rules' is required", **_at(root))
        )
    return rules, audiences


def _items(entries: dict[str, yaml.Node], name: str, problems: list[RuleProblem]) -> list:
    node = entries.get(name)
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        problems.append(
            RuleProblem(
                code="not_a_list", message=f"{name!r} must be a list", field=name, **_at(node)
            )
        )
        return []
    if len(node.value) > MAX_RULES:
        message = f"a file may hold at most {MAX_RULES} {name}, this one has {len(node.value)}"
        problems.append(RuleProblem(code="too_many_rules", message=message, **_at(node)))
        return []
    return list(node.value)


def _unique(id_: str, seen: set[str], node: yaml.Node, problems: list[RuleProblem]) -> None:
    if id_ in seen:
        problems.append(
            RuleProblem(
                code="duplicate_id",
                message=f"another entry has the id {id_!r}",
                rule=id_,
                field="id",
                **_at(node),
            )
        )
    seen.add(id_)


def _head(
    node: yaml.Node,
    what: str,
    allowed: tuple[str, ...],
    required: tuple[str, ...],
    problems: list[RuleProblem],
) -> tuple[str | None, dict[str, yaml.Node], str, Any] | None:
    """What rules and audiences share: a mapping with an ``id`` and a ``description``.

    Returns the id (``None`` when missing or not text), the entries, the description and
    the ``problem`` function that records a problem of this rule or audience; ``None``
    when ``node`` is not a mapping (reported as ``not_a_mapping``)."""
    if not isinstance(node, yaml.MappingNode):
        problems.append(
            RuleProblem(code="not_a_mapping", message=f"each {what} must be a mapping", **_at(node))
        )
        return None
    id_node = next(
        (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == "id"), None
    )
    value = _value(id_node) if isinstance(id_node, yaml.ScalarNode) else None
    name = value if isinstance(value, str) else None

    def problem(code: str, message: str, field_: str, at: yaml.Node, **extra: Any) -> None:
        problems.append(
            RuleProblem(code=code, message=message, rule=name, field=field_, **_at(at), **extra)
        )

    entries = _mapping(node, allowed, name, problems)
    for field_ in required:
        if field_ not in entries:
            problem("missing_field", f"{field_!r} is required", field_, node)
    if id_node is not None and (name is None or not _RULE_ID.match(name)):
        problem(
            "bad_id",
            "an id is 1 to 64 lowercase letters, digits, '_', '.' or '-', starting with a "
            "letter or digit",
            "id",
            id_node,
        )
    description = ""
    if "description" in entries:
        description = _value(entries["description"])
        if not isinstance(description, str):
            problem("bad_type", "'description' must be text", "description", entries["description"])
            description = ""
    return name, entries, description, problem


def _audience(node: yaml.Node, problems: list[RuleProblem]) -> Audience | None:
    before = len(problems)
    head = _head(node, "audience", AUDIENCE_FIELDS, ("id", "when"), problems)
    if head is None:
        return None
    name, entries, description, problem = head
    when = None
    if "when" in entries:
        when = _expression_field(
            entries["when"], list(EVENT_FIELDS), "when", problem, boolean=True,
            roots=AUDIENCE_ROOTS,
        )  # fmt: skip
    if len(problems) > before or when is None or name is None:
        return None
    return Audience(name, description, when)


def _mapping(
    node: yaml.MappingNode, allowed: tuple[str, ...], rule: str | None, problems: list[RuleProblem]
) -> dict[str, yaml.Node]:
    entries: dict[str, yaml.Node] = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None  # 'on' is no bool
        if not isinstance(name, str) or name not in allowed:
            problems.append(
                RuleProblem(
                    code="unknown_field",
                    message=f"unknown field {name!r} (allowed: {', '.join(allowed)})",
                    rule=rule,
                    field=str(name),
                    **_at(key),
                )
            )
            continue
        if name in entries:
            problems.append(
                RuleProblem(
                    code="duplicate_field",
                    message=f"{name!r} is given twice",
                    rule=rule,
                    field=name,
                    **_at(key),
                )
            )
        entries[name] = value
    return entries


def _rule(node: yaml.Node, problems: list[RuleProblem]) -> Rule | None:
    before = len(problems)
    head = _head(node, "rule", RULE_FIELDS, ("id", "on", "when"), problems)
    if head is None:
        return None
    name, entries, description, problem = head
    on = _on(entries.get("on"), problem)
    when = None
    if "when" in entries and on:
        when = _expression_field(entries["when"], on, "when", problem, boolean=True)
    emit: dict[str, Template] = {}
    if "emit" in entries:
        emit = _emit(entries["emit"], on, problem)
    once_per, cooldown = _limits(entries, problem)
    holdout = 0.0
    if "holdout" in entries:
        value = _value(entries["holdout"])
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            problem(
                "bad_holdout",
                "'holdout' is a fraction from 0 to below 1",
                "holdout",
                entries["holdout"],
            )
        else:
            holdout = float(value)
    channel = None
    if "channel" in entries:
        value = _value(entries["channel"])
        if value not in CHANNELS:
            problem(
                "bad_channel",
                f"'channel' is one of {', '.join(CHANNELS)}",
                "channel",
                entries["channel"],
            )
        else:
            channel = value
    if len(problems) > before or when is None or name is None:
        return None
    return Rule(name, description, frozenset(on), when, emit, once_per, cooldown, holdout, channel)


def _on(node: yaml.Node | None, problem: Any) -> list[str]:
    if node is None:
        return []
    value = _value(node)
    kinds = [value] if isinstance(value, str) else value
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
        problem("bad_on", "'on' is an event type or a list of them", "on", node)
        return []
    unknown = [k for k in kinds if k not in EVENT_FIELDS]
    if unknown:
        problem(
            "unknown_event_type",
            f"unknown event type {unknown[0]!r} (known: {', '.join(EVENT_FIELDS)})",
            "on",
            node,
        )
        return []
    return list(dict.fromkeys(kinds))


def _limits(entries: dict[str, yaml.Node], problem: Any) -> tuple[str | None, timedelta | None]:
    once_per = cooldown = None
    if "once_per" in entries:
        value = _value(entries["once_per"])
        if value not in ONCE_PER:
            problem(
                "bad_once_per",
                f"'once_per' is one of {', '.join(ONCE_PER)}",
                "once_per",
                entries["once_per"],
            )
        else:
            once_per = value
    if "cooldown" in entries:
        cooldown = parse_duration(_value(entries["cooldown"]))
        if cooldown is None:
            problem(
                "bad_cooldown",
                "'cooldown' is a positive duration such as 90s, 30m, 12h, 7d or 2w, or seconds",
                "cooldown",
                entries["cooldown"],
            )
    if once_per is not None and cooldown is not None:
        problem(
            "conflicting_limits",
            "give 'once_per' or 'cooldown', not both",
            "cooldown",
            entries["cooldown"],
        )
    return once_per, cooldown


def parse_duration(value: Any) -> timedelta | None:
    """A ``cooldown`` value as a duration, or ``None`` if it is not a positive one.

    >>> parse_duration("7d"), parse_duration(90), parse_duration("soon")
    (datetime.timedelta(days=7), datetime.timedelta(seconds=90), None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        return None
    if not 0 < seconds <= 10 * 365 * 86400:
        return None
    return timedelta(seconds=seconds)


def _emit(node: yaml.Node, on: list[str], problem: Any) -> dict[str, Template]:
    if not isinstance(node, yaml.MappingNode):
        problem("bad_emit", "'emit' is a mapping of attribute names to values", "emit", node)
        return {}
    emit: dict[str, Template] = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None  # 'on' is no bool
        field_ = f"emit.{name}"
        if not isinstance(name, str) or not _ATTRIBUTE.match(name):
            problem("bad_emit", f"attribute name {name!r} is not an identifier", field_, key)
            continue
        if not isinstance(value, yaml.ScalarNode):
            problem("bad_emit", "an attribute is a number, text, true/false or null", field_, value)
            continue
        literal = _value(value)
        if not isinstance(literal, str):
            if not isinstance(literal, int | float | bool | None):
                problem(
                    "bad_emit", "an attribute is a number, text, true/false or null", field_, value
                )
                continue
            emit[name] = Template(literal=literal)
            continue
        parts: list[str | Expression] = []
        end = 0
        for match in _TEMPLATE.finditer(literal):
            if match.start() > end:
                parts.append(literal[end : match.start()])
            inner = match.group(1)
            compiled = _expression(
                inner.strip(),
                value,
                on,
                field_,
                problem,
                boolean=False,
                offset=match.start(1) + len(inner) - len(inner.lstrip()),
            )
            if compiled is None:
                break
            parts.append(compiled)
            end = match.end()
        else:
            if end < len(literal):
                parts.append(literal[end:])
            emit[name] = Template(literal=literal, parts=tuple(parts) if end else ())
    return emit


def _expression_field(
    node: yaml.Node,
    on: list[str],
    field_: str,
    problem: Any,
    *,
    boolean: bool,
    roots: tuple[str, ...] = ROOTS,
) -> Expression | None:
    value = _value(node) if isinstance(node, yaml.ScalarNode) else None
    if not isinstance(value, str) or not value.strip():
        problem("bad_expression", f"'{field_}' must be an expression (text)", field_, node)
        return None
    return _expression(value, node, on, field_, problem, boolean=boolean, roots=roots)


# ------------------------------------------------------------------------- expressions

_TOKEN = re.compile(
    r"""
    (?P<string>[rRbB]{0,2}(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[uU]?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<space>\s+)
  | (?P<symbol>.)
    """,
    re.S | re.X,
)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    return [
        (m.lastgroup or "", m.group(), m.start())
        for m in _TOKEN.finditer(text)
        if m.lastgroup != "space"
    ]


def flat_name(path: str) -> str:
    """The CEL variable a field path is evaluated as: ``event.amount`` → ``event_amount``.

    Rules are written with paths; they run on flat variables, because the CEL bindings
    convert a flat mapping of values several times faster than nested ones.
    """
    return path.replace(".", "_")


def _leaf(path: str) -> Field | None:
    parts = path.split(".")
    fields: Any = {"event": _ALL_EVENT_FIELDS, **_SCHEMA}[parts[0]]
    for part in parts[1:]:
        fields = fields[part]
    return fields if isinstance(fields, tuple) else None


def _analyse(
    text: str, on: list[str], roots: tuple[str, ...] = ROOTS
) -> tuple[tuple[str, str, int] | None, list[tuple[int, int, str]]]:
    """Check the names an expression uses; return the first problem, as (code, message,
    index), or None, and the spans (start, end, path) of the field paths it reads."""
    tokens = _tokens(text)
    spans: list[tuple[int, int, str]] = []
    if len(tokens) > MAX_EXPRESSION_TOKENS:
        return ("too_long", f"more than {MAX_EXPRESSION_TOKENS} tokens", 0), spans
    depth = 0
    for _, token, at in tokens:
        if token in "([{":
            depth += 1
            if depth > MAX_NESTING:
                return ("too_deep", f"nested deeper than {MAX_NESTING} levels", at), spans
        elif token in ")]}":
            depth -= 1
    event_fields: dict[str, Field] = {}
    for kind in on:
        event_fields.update(EVENT_FIELDS[kind])
    schema: dict[str, Any] = {
        name: fields for name, fields in {"event": event_fields, **_SCHEMA}.items() if name in roots
    }
    i = 0
    while i < len(tokens):
        kind, token, at = tokens[i]
        after_dot = i > 0 and tokens[i - 1][1] == "."
        calls = i + 1 < len(tokens) and tokens[i + 1][1] == "("
        if kind != "name" or token in _KEYWORDS:
            i += 1
            continue
        if after_dot:
            if calls and token in COMPREHENSIONS:
                message = f"the macro {token}() is not allowed: its cost depends on the data"
                return ("not_allowed", message, at), spans
            if calls and token not in METHODS:
                return ("unknown_function", f"unknown method {token}()", at), spans
            i += 1
            continue
        if calls:
            if token not in GLOBAL_FUNCTIONS:
                return ("unknown_function", f"unknown function {token}()", at), spans
            i += 1
            continue
        if token not in schema:
            message = f"unknown variable {token!r} (known here: {', '.join(roots)})"
            return ("unknown_variable", message, at), spans
        # follow the path root.a.b while it names fields
        path, fields, j = token, schema[token], i + 1
        while (
            j + 1 < len(tokens)
            and tokens[j][1] == "."
            and tokens[j + 1][0] == "name"
            and not (j + 2 < len(tokens) and tokens[j + 2][1] == "(")
        ):
            name, name_at = tokens[j + 1][1], tokens[j + 1][2]
            if not isinstance(fields, dict):
                message = f"{path} is a value, it has no field {name!r}"
                return ("unknown_field", message, name_at), spans
            if name not in fields:
                known = ", ".join(sorted(fields))
                for_ = f" for {'/'.join(on)} events" if token == "event" else ""
                message = f"{path} has no field {name!r}{for_} (its fields: {known})"
                return ("unknown_field", message, name_at), spans
            path, fields, j = f"{path}.{name}", fields[name], j + 2
        if isinstance(fields, dict):
            known = ", ".join(sorted(fields))
            message = f"{path} is a group of fields: name one of them ({known})"
            return ("not_a_value", message, at), spans
        last = tokens[j - 1]
        spans.append((at, last[2] + len(last[1]), path))
        i = j
    return None, spans


def _expression(
    text: str,
    node: yaml.Node,
    on: list[str],
    field_: str,
    problem: Any,
    *,
    boolean: bool,
    offset: int = 0,
    roots: tuple[str, ...] = ROOTS,
) -> Expression | None:
    """Validate and compile one expression, or report what is wrong and return None."""
    if len(text) > MAX_EXPRESSION_CHARS:
        problem("too_long", f"longer than {MAX_EXPRESSION_CHARS} characters", field_, node)
        return None
    if not text:
        problem("bad_expression", "an empty expression", field_, node)
        return None
    found, spans = _analyse(text, on, roots)
    if found is not None:
        code, message, at = found
        problem(code, message, field_, node, position=offset + at + 1)
        return None
    try:
        cel.compile(text)  # the source as written: syntax errors point into it
    except Exception as exc:
        message = " ".join(str(exc).split())
        position = re.search(r"<input>:\d+:(\d+)", message)
        detail = message.split("ERROR: <input>:", 1)[-1]
        detail = re.sub(r"^\d+:\d+: ", "", detail).split(" | ")[0]
        problem(
            "syntax",
            detail,
            field_,
            node,
            position=offset + int(position.group(1)) if position else None,
        )
        return None
    flat = text
    for start, end, path in reversed(spans):
        flat = flat[:start] + flat_name(path) + flat[end:]
    try:
        program = cel.compile(flat)
    except Exception as exc:  # a path in a place where CEL wants a selection, e.g. has()
        problem("bad_expression", f"cannot be evaluated: {exc}", field_, node)
        return None
    paths = frozenset(path for _, _, path in spans)
    variables = set(program.references()["variables"])
    unknown = variables - {flat_name(path) for path in paths}
    if unknown:
        problem("unknown_variable", f"unknown variable {sorted(unknown)[0]!r}", field_, node)
        return None
    for kind in on:
        try:
            result = program.execute(_probe(kind, paths))
        except (TypeError, ValueError) as exc:
            message = f"on {kind} events: {' '.join(str(exc).split())}"
            others = [
                p for p in paths if p.startswith("event.") and p[6:] not in EVENT_FIELDS[kind]
            ]
            if others:
                message += f" ({', '.join(sorted(others))} is null on {kind} events)"
            problem("type_error", message, field_, node)
            return None
        except ZeroDivisionError:
            continue
        except Exception as exc:
            problem("invalid", f"on {kind} events: {' '.join(str(exc).split())}", field_, node)
            return None
        if boolean and not isinstance(result, bool):
            message = f"must be true or false, but gives {type(result).__name__} on {kind} events"
            problem("type_error", message, field_, node)
            return None
        if not boolean and not isinstance(result, str | int | float | bool | None):
            message = f"must give a number, text, true/false or null, not {type(result).__name__}"
            problem("type_error", message, field_, node)
            return None
    return Expression(text, program, paths)


_SAMPLES: dict[type, Any] = {str: "x", int: 1, float: 1.0, bool: True}


def _probe(kind: str, paths: Iterable[str]) -> dict[str, Any]:
    """Typed sample values of the fields ``paths``, for an event of ``kind``: non-null,
    except the fields of other event types, which are null on this one."""
    values: dict[str, Any] = {}
    for path in paths:
        if path == "event.type":
            values[flat_name(path)] = kind
        elif path.startswith("event.") and path[6:] not in EVENT_FIELDS[kind]:
            values[flat_name(path)] = None
        else:
            field_ = _leaf(path)
            values[flat_name(path)] = _SAMPLES[field_[0]] if field_ else None
    return values


# ---------------------------------------------------------------------------- firing


def in_holdout(rule_id: str, customer_id: str, fraction: float) -> bool:
    """Whether a customer is in a rule's holdout (control) group of ``fraction``.

    Deterministic: a hash of the rule id and the customer id, uniform on [0, 1).

    >>> in_holdout("r1", "c1", 0.0), in_holdout("r1", "c1", 0.999999)
    (False, True)
    >>> share = sum(in_holdout("r1", f"c{i}", 0.1) for i in range(10_000)) / 10_000
    >>> 0.09 < share < 0.11
    True
    """
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"holdout\x1f{rule_id}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def period(once_per: str, at: datetime) -> str:
    """The period a ``once_per`` limit counts in, for an event at ``at`` (UTC).

    >>> from datetime import timezone
    >>> at = datetime(2026, 3, 4, 15, tzinfo=timezone.utc)
    >>> [period(p, at) for p in ONCE_PER]
    ['ever', '2026-03-04', '2026-W10', '2026-03']
    """
    if once_per == "customer":
        return "ever"
    day = at.astimezone(UTC).date() if at.tzinfo else at.date()
    if once_per == "customer+day":
        return day.isoformat()
    if once_per == "customer+week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


def event_view(
    event: Purchase | ChatMessage | Feedback,
    amount: float | None = None,
    cost: float | None = None,
    sentiment: float | None = None,
    intent: str | None = None,
) -> dict[str, Any]:
    """What rules see as ``event``; ``amount`` and ``cost`` are a purchase's money in the
    base currency, ``sentiment`` and ``intent`` a chat message's scores."""
    if isinstance(event, Purchase):
        return {
            "type": "purchase",
            "event_id": event.event_id,
            "amount": float(event.amount if amount is None else amount),
            "cost": float((event.cost or 0.0) if cost is None else cost),
            "currency": event.currency,
            "order_id": event.order_id,
            "items": len(event.items or ()),
        }
    if isinstance(event, ChatMessage):
        return {
            "type": "chat",
            "event_id": event.event_id,
            "conversation_id": event.conversation_id,
            "channel": event.channel,
            "text": event.text,
            "sentiment": float(sentiment or 0.0),
            "intent": intent or "other",
        }
    return {
        "type": "feedback",
        "event_id": event.event_id,
        "rating": event.rating,
        "nps": event.nps,
        "text": event.text,
        "order_id": event.order_id,
    }


def _days(at: datetime, since: datetime | None) -> float | None:
    return None if since is None else (at - since).total_seconds() / 86400


def profile_view(profile: Profile, at: datetime) -> dict[str, Any]:
    """What rules see as ``before`` or ``after``, at the time of the event ``at``; the
    next best offer is the customer's top recommendation (:mod:`crmstream.models.recommend`)."""
    top = profile.recommendations[0] if profile.recommendations else None
    return {
        "customer_id": profile.customer_id,
        "orders": profile.orders,
        "revenue": float(profile.revenue),
        "cost": float(profile.cost),
        "clv": float(profile.revenue - profile.cost),
        "tier": profile.tier,
        "tier_rank": TIER_RANK[profile.tier],
        "messages": profile.messages,
        "feedback": profile.feedback,
        "last_rating": profile.last_rating,
        "last_nps": profile.last_nps,
        "last_sentiment": profile.last_sentiment,
        "sentiment_avg": profile.sentiment_avg,
        "negative_streak": profile.negative_streak,
        "last_intent": profile.last_intent,
        "purchase_propensity": profile.purchase_propensity,
        "segment": profile.segment,
        "last_purchase_anomaly": profile.last_purchase_anomaly,
        "predicted_revenue": profile.predicted_revenue,
        "predicted_clv": profile.predicted_clv,
        "days_since_first_purchase": _days(at, profile.first_purchase_at),
        "days_since_last_purchase": _days(at, profile.last_purchase_at),
        "next_best_offer": top.item if top is not None else None,
        "next_best_offer_reason": top.reason if top is not None else None,
    }


def _allowed(rule: Rule, fired: Mapping[str, datetime], at: datetime) -> bool:
    last = fired.get(rule.id)
    if last is None:
        return True
    if rule.once_per == "customer":
        return False
    if rule.once_per is not None:
        return period(rule.once_per, last) != period(rule.once_per, at)
    if rule.cooldown is not None:
        return at - last >= rule.cooldown
    return True


def fire(
    rules: RuleSet,
    before: Profile,
    after: Profile,
    event: Purchase | ChatMessage | Feedback,
    view: dict[str, Any] | None = None,
) -> tuple[Profile, list[Trigger | AudienceChange]]:
    """Evaluate the rules that apply to ``event`` and the audiences; return the customer's
    new profile (``rules_fired`` and ``audiences`` updated), the triggers that fired in the
    file's order, then the audience changes (exits, then entries).

    ``before`` and ``after`` are the profile before and after the event was applied
    (``after`` includes the event's day in its windowed traits); ``view`` is what the
    rules see as ``event`` (default: :func:`event_view` of the event as it is).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> from crmstream.models.profile import Profile
    >>> rules = load_rules('''
    ... rules:
    ...   - id: first-big-purchase
    ...     on: purchase
    ...     when: before.orders == 0 && event.amount > 100.0
    ...     emit: {campaign: welcome, spent: "{{ event.amount }}"}
    ...     once_per: customer
    ... ''')
    >>> at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    >>> buy = Purchase(event_id="p1", customer_id="c1", occurred_at=at, amount=150.0)
    >>> after = Profile(customer_id="c1", orders=1, revenue=150.0)
    >>> after, triggers = fire(rules, Profile(customer_id="c1"), after, buy)
    >>> [(t.rule, t.attributes, t.holdout) for t in triggers]
    [('first-big-purchase', {'campaign': 'welcome', 'spent': 150.0}, False)]
    >>> fire(rules, Profile(customer_id="c1"), after, buy)[1]   # once per customer
    []
    """
    kind = EVENT_TYPES[type(event)]
    candidates = rules.by_type[kind]
    if not candidates and not rules.audiences and not after.audiences:
        return after, []
    at = event.occurred_at
    fired = after.rules_fired
    due = [
        rule
        for rule in candidates
        if _allowed(rule, fired, at) and (rule.channel is None or after.consents_to(rule.channel))
    ]
    if not due and not rules.audiences and not after.audiences:
        return after, []
    paths = rules.paths[kind]
    roots = {root for _, root, _ in paths}
    views: dict[str, Any] = {}
    if "event" in roots:
        views["event"] = view if view is not None else event_view(event)
    if "before" in roots:
        views["before"] = profile_view(before, at)
    if "after" in roots:
        views["after"] = profile_view(after, at)
    if "traits" in roots:
        views["traits"] = window_traits(
            after.activity, at, after.revenue, after.first_purchase_at, rules.windows[kind]
        )
    variables: dict[str, Any] = {}
    for name, root, parts in paths:
        value: Any = views[root]
        for part in parts:
            value = value.get(part)  # another event type's field is null
        variables[name] = value
    context = cel.Context(variables)
    outputs: list[Trigger | AudienceChange] = []
    new_fired: dict[str, datetime] | None = None
    customer = after.customer_id
    for rule in due:
        try:
            matched = rule.when.run(context) is True
        except Exception:  # e.g. a null field compared with a number: the rule does not fire
            rules.errors[rule.id] += 1
            continue
        if not matched:
            continue
        attributes: dict[str, Scalar] = {}
        for name, template in rule.emit.items():
            try:
                value = template.render(context)
                attributes[name] = redact(value) if isinstance(value, str) else value
            except Exception:
                rules.errors[rule.id] += 1
                attributes[name] = None
        if rule.once_per is not None:
            key = deterministic_id("trigger", rule.id, customer, period(rule.once_per, at))
        else:
            key = deterministic_id("trigger", rule.id, customer, event.event_id)
        outputs.append(
            Trigger(
                trigger_id=key,
                rule=rule.id,
                customer_id=customer,
                occurred_at=at,
                event_id=event.event_id,
                attributes=attributes,
                holdout=in_holdout(rule.id, customer, rule.holdout),
                channel=rule.channel,
            )
        )
        if new_fired is None:
            new_fired = dict(fired)
        last = new_fired.get(rule.id)
        new_fired[rule.id] = at if last is None else max(last, at)
    members = _members(rules, after.audiences, context)
    changes = {}
    if members != after.audiences:
        changes["audiences"] = members
        was, now = set(after.audiences), set(members)
        for audience, change in [*((a, "exit") for a in after.audiences if a not in now),
                                 *((a, "enter") for a in members if a not in was)]:  # fmt: skip
            outputs.append(
                AudienceChange(
                    change_id=deterministic_id(
                        "audience", audience, customer, event.event_id, change
                    ),
                    audience=audience,
                    customer_id=customer,
                    change=change,  # type: ignore[arg-type]
                    occurred_at=at,
                    event_id=event.event_id,
                )
            )
    if new_fired is not None:
        changes["rules_fired"] = new_fired
    if not changes:
        return after, outputs
    return msgspec.structs.replace(after, **changes), outputs


def _members(rules: RuleSet, current: list[str], context: Any) -> list[str]:
    """The audiences a customer is in after an event, in the file's order (an audience no
    longer in the file is left; one that fails to evaluate keeps its membership)."""
    members: list[str] = []
    for audience in rules.audiences:
        try:
            inside = audience.when.run(context) is True
        except Exception:
            rules.errors[audience.id] += 1
            inside = audience.id in current
        if inside:
            members.append(audience.id)
    return members


def _scalar(value: Any) -> Scalar:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _text(value: Scalar) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def rule_ids(rules: RuleSet | None) -> Iterable[str]:
    """The ids of a rule set's rules (none for no rule set)."""
    return () if rules is None else (rule.id for rule in rules.rules)
