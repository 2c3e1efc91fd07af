"""The operators' rule language: TOML tables compiled once into predicates.

A rule says what to match and what to do::

    [[rule]]
    id = "nmap-options-probe"
    description = "nmap's SIPOptions probe (the one Shodan sends)"
    action = "drop"                      # forward | drop | reject | ban | deceive | allow
    mode = "enforce"                     # or "monitor": count and log, change nothing
    [rule.match]
    method = "OPTIONS"                   # a bare value means: equals (case-insensitive)
    "from.user" = "nm"
    "header.call-id" = { equals = "50000", case_sensitive = true }

A condition is a table. Each key is a field (below) with a value or a table of
operators, or a combinator: ``all`` and ``any`` take lists of conditions,
``not`` takes one. Several keys in one table must all hold.

Operators: ``equals``, ``prefix``, ``suffix``, ``contains``, ``regex``
(search), ``in`` (a list; for ``source``, addresses and CIDRs), ``exists``
and ``absent`` (true/false), ``lt``/``le``/``gt``/``ge`` (numbers), and
``case_sensitive`` (default false) for the text ones.

Fields: ``method``, ``status``, ``ruri`` and ``ruri.user``/``.host``/``.port``,
``from.``/``to.``/``contact.`` ``user``/``host``/``port``/``tag``/``display``/
``uri``, ``via.transport``/``.host``/``.port``/``.branch``/``.rport``/
``.received`` (the top Via), ``header.NAME`` (the first value, long or
compact name), ``headers.NAME`` (any value), ``source`` (the sender's
address), ``transport``, ``local_port``, ``size`` (bytes), ``body``,
``sdp.s`` (the SDP session name).

Compiling checks everything once; an error names the file, the rule and the
field. Evaluating reads only the fields a rule names, through Peek's
accessors, so a rule costs what its fields cost.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

from ..sip import PEEKED_HEADERS, Peek, SipError, header_key
from ..values import Peer, Verdict

ACTIONS: Final = ("forward", "drop", "reject", "ban", "deceive", "allow")
MODES: Final = ("enforce", "monitor")
TEXT_OPS: Final = ("equals", "prefix", "suffix", "contains", "regex", "in")
NUMBER_OPS: Final = ("lt", "le", "gt", "ge")
FLAG_OPS: Final = ("exists", "absent")


class RuleError(ValueError):
    """A rule that cannot be compiled: says where (file, rule, field) and why."""


class Context(NamedTuple):
    """What a rule can look at: the message, who sent it, where it arrived."""

    view: Peek
    source: Peer
    local_port: int


Getter = Callable[[Context], Any]  # the field's value, or None when absent
Predicate = Callable[[Context], bool]


@dataclass(frozen=True)
class Rule:
    id: str
    action: str
    predicate: Predicate
    description: str = ""
    mode: Literal["enforce", "monitor"] = "enforce"
    code: int = 0
    references: tuple[str, ...] = ()
    false_positives: str = ""
    origin: str = ""  # the file it came from
    fields: tuple[str, ...] = field(default=())
    duration: float = 0.0  # seconds, for "ban" (0: the ban book's default)
    guard: Guard | None = None  # one condition the rule cannot match without (for the index)

    # what the rule decides, built once: the hot path returns and counts it
    verdict: Verdict = field(init=False, compare=False)

    def __post_init__(self) -> None:
        kind: Any = self.action
        object.__setattr__(self, "verdict", Verdict(kind, self.id, self.code, self.duration))


class Guard(NamedTuple):
    """A text test on one field that must hold for the rule to match: the
    RuleSet indexes rules by it, so a message only meets the rules whose
    guard its fields could satisfy."""

    field: str
    op: str
    operand: Any
    case_sensitive: bool


# ------------------------------------------------------------------ fields


def _safe(getter: Getter) -> Getter:
    """A field whose header does not parse reads as absent."""

    def read(ctx: Context) -> Any:
        try:
            return getter(ctx)
        except SipError:
            return None

    return read


def _address_field(which: str, part: str) -> Getter | None:
    scalar = {
        ("from", "user"): "from_user",
        ("from", "tag"): "from_tag",
        ("to", "user"): "to_user",
        ("to", "tag"): "to_tag",
        ("contact", "user"): "contact_user",
    }.get((which, part))
    if scalar is not None:
        return _safe(lambda ctx: getattr(ctx.view, scalar))
    attr = {"from": "from_", "to": "to", "contact": "contact"}[which]

    def typed(ctx: Context) -> Any:
        addr = getattr(ctx.view, attr)
        if addr is None:
            return None
        if part == "display":
            return addr.display_name
        if part == "tag":
            return addr.tag
        uri = addr.uri
        if uri is None:
            return None
        return {"user": uri.user, "host": uri.host_bare, "port": uri.port, "uri": uri.raw}.get(
            part, _MISSING
        )

    if part not in ("user", "host", "port", "tag", "display", "uri"):
        return None
    return _safe(typed)


_MISSING: Final = object()


def _sdp_session(ctx: Context) -> str | None:
    view = ctx.view
    if view.body_at >= view.body_end:
        return None
    data = view.data  # searched in place: no copy of the body
    at = data.find(b"\ns=", view.body_at, view.body_end)
    if at < 0:
        return None
    end = data.find(b"\n", at + 3, view.body_end)
    line = data[at + 3 : end if end >= 0 else view.body_end]
    return line.rstrip(b"\r").decode("utf-8", "replace")


def field_getter(name: str) -> Getter | None:
    """The getter for a field name; None if there is no such field."""
    simple: dict[str, Getter] = {
        "method": lambda ctx: ctx.view.method,
        "status": lambda ctx: ctx.view.status,
        "ruri": lambda ctx: ctx.view.uri_text,
        "ruri.user": _safe(lambda ctx: ctx.view.ruri_user),
        "ruri.host": _safe(lambda ctx: (ctx.view.ruri_host or "").strip("[]").lower() or None),
        "ruri.port": _safe(lambda ctx: ctx.view.ruri_port),
        "via.transport": _safe(lambda ctx: ctx.view.via_transport),
        "via.host": _safe(lambda ctx: ctx.view.via_host),
        "via.port": _safe(lambda ctx: ctx.view.via_port),
        "via.branch": _safe(lambda ctx: ctx.view.via_branch),
        "via.rport": _safe(lambda ctx: ctx.view.via_rport),
        "via.received": _safe(lambda ctx: ctx.view.via_received),
        "source": lambda ctx: ctx.source.host,
        "transport": lambda ctx: ctx.source.transport,
        "local_port": lambda ctx: ctx.local_port,
        "size": lambda ctx: len(ctx.view.data),
        "body": lambda ctx: ctx.view.body.decode("utf-8", "replace"),
        "sdp.s": _sdp_session,
    }
    if name in simple:
        return simple[name]
    head, _, part = name.partition(".")
    if head in ("from", "to", "contact") and part:
        return _address_field(head, part)
    if head in ("header", "headers") and part:
        key = header_key(part)
        if head == "header":
            if key in PEEKED_HEADERS:  # the hot-path view has it: no parse
                slot = PEEKED_HEADERS.index(key)
                return lambda ctx: ctx.view.raw(slot)
            return _safe(lambda ctx: ctx.view.message().get(key))
        return _safe(lambda ctx: _all_values(ctx.view, key))
    return None


def _all_values(view: Peek, key: str) -> list[str] | None:
    values = view.message().get_all(key)  # the full parse, kept on the view
    return values or None


# ------------------------------------------------------------- operators


def _text_op(op: str, operand: Any, case_sensitive: bool, where: str) -> Callable[[str], bool]:
    if op == "regex":
        if not isinstance(operand, str):
            raise RuleError(f"{where}: regex takes a string")
        try:
            pattern = re.compile(operand, 0 if case_sensitive else re.IGNORECASE)
        except re.error as exc:
            raise RuleError(f"{where}: bad regex {operand!r}: {exc}") from None
        return lambda value: pattern.search(value) is not None
    if op == "in":
        if not isinstance(operand, list) or not all(isinstance(x, str | int) for x in operand):
            raise RuleError(f"{where}: 'in' takes a list of strings or numbers")
        items = {str(x) if case_sensitive else str(x).lower() for x in operand}
        return (
            (lambda value: value in items)
            if case_sensitive
            else (lambda value: value.lower() in items)
        )
    if not isinstance(operand, str | int):
        raise RuleError(f"{where}: {op} takes a string or a number")
    text = str(operand) if case_sensitive else str(operand).lower()
    fold = (lambda v: v) if case_sensitive else str.lower
    match op:
        case "equals":
            return lambda value: fold(value) == text
        case "prefix":
            return lambda value: fold(value).startswith(text)
        case "suffix":
            return lambda value: fold(value).endswith(text)
        case _:  # contains
            return lambda value: text in fold(value)


def _number_op(op: str, operand: Any, where: str) -> Callable[[float], bool]:
    if isinstance(operand, bool) or not isinstance(operand, int | float):
        raise RuleError(f"{where}: {op} takes a number")
    return {
        "lt": lambda v: v < operand,
        "le": lambda v: v <= operand,
        "gt": lambda v: v > operand,
        "ge": lambda v: v >= operand,
    }[op]


def _source_in(operand: Any, where: str) -> Callable[[str], bool]:
    if not isinstance(operand, list):
        raise RuleError(f"{where}: 'in' takes a list of addresses or CIDRs")
    try:
        networks = [ipaddress.ip_network(str(x), strict=False) for x in operand]
    except ValueError as exc:
        raise RuleError(f"{where}: {exc}") from None

    def check(value: str) -> bool:
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    return check


def _leaf(name: str, spec: Any, where: str) -> Predicate:
    """One field with its operators."""
    getter = field_getter(name)
    if getter is None:
        raise RuleError(f"{where}: unknown field {name!r} (see the rule language in README.md)")
    if not isinstance(spec, dict):
        spec = {"equals": spec}
    spec = dict(spec)
    case_sensitive = spec.pop("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise RuleError(f"{where}.case_sensitive: true or false")
    if not spec:
        raise RuleError(
            f"{where}: no operator (use one of {', '.join(TEXT_OPS + NUMBER_OPS + FLAG_OPS)})"
        )
    tests: list[Callable[[Any], bool]] = []
    for op, operand in spec.items():
        at = f"{where}.{op}"
        if op in FLAG_OPS:
            if not isinstance(operand, bool):
                raise RuleError(f"{at}: true or false")
            present = operand if op == "exists" else not operand
            tests.append((lambda v: v is not None) if present else (lambda v: v is None))
        elif op in NUMBER_OPS:
            check_number = _number_op(op, operand, at)
            tests.append(_number_test(check_number))
        elif op == "in" and name == "source":
            check_source = _source_in(operand, at)
            tests.append(_present_and(check_source))
        elif op in TEXT_OPS:
            check_text = _text_op(op, operand, case_sensitive, at)

            def text_test(value: Any, c: Callable[[str], bool] = check_text) -> bool:
                if value is None:
                    return False
                if isinstance(value, list):
                    return any(c(str(v)) for v in value)
                return c(str(value))

            tests.append(text_test)
        else:
            raise RuleError(
                f"{at}: unknown operator (use one of {', '.join(TEXT_OPS + NUMBER_OPS + FLAG_OPS)})"
            )

    if len(tests) == 1:
        only = tests[0]
        return lambda ctx: only(getter(ctx))

    def predicate(ctx: Context) -> bool:
        value = getter(ctx)
        return all(t(value) for t in tests)

    return predicate


def compile_condition(spec: Any, where: str, fields: list[str] | None = None) -> Predicate:
    """A predicate from a condition table (see the module doc)."""
    if not isinstance(spec, dict) or not spec:
        raise RuleError(f"{where}: a condition is a non-empty table")
    parts: list[Predicate] = []
    for key, value in spec.items():
        at = f"{where}.{key}"
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise RuleError(f"{at}: a non-empty list of conditions")
            subs = [compile_condition(v, f"{at}[{i}]", fields) for i, v in enumerate(value)]
            parts.append(_all_of(subs) if key == "all" else _any_of(subs))
        elif key == "not":
            sub = compile_condition(value, at, fields)
            parts.append(_none_of(sub))
        else:
            if fields is not None:
                fields.append(key)
            parts.append(_leaf(key, value, at))
    return parts[0] if len(parts) == 1 else _all_of(parts)


def _all_of(preds: list[Predicate]) -> Predicate:
    return lambda ctx: all(p(ctx) for p in preds)


def _any_of(preds: list[Predicate]) -> Predicate:
    return lambda ctx: any(p(ctx) for p in preds)


def _none_of(pred: Predicate) -> Predicate:
    return lambda ctx: not pred(ctx)


def _number_test(check: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and check(v)


def _present_and(check: Callable[[str], bool]) -> Callable[[Any], bool]:
    return lambda v: v is not None and check(v)


# Fields whose value is one string or number (lists and addresses are not indexed).
_UNINDEXED_PREFIXES: Final = ("headers.", "source")
_GUARD_RANK: Final = {"equals": 0, "in": 0, "prefix": 1, "suffix": 1, "contains": 1, "regex": 2}


def _fusable(pattern: str) -> bool:
    """Whether a regex can join an alternation unchanged: no groups (a
    back-reference would renumber) and no global inline flags."""
    try:
        return re.compile(pattern).groups == 0 and bool(re.compile(f"(?:{pattern})|x"))
    except re.error:
        return False


def _anchored(pattern: str) -> bool:
    """Whether every match of ``pattern`` starts at the start of the string
    (``^x`` yes, ``^x|y`` no: a top-level alternation parses as one branch)."""
    try:
        _parser: Any = importlib.import_module("re._parser")  # the stdlib's regex parser
        first = _parser.parse(pattern)[0]
    except Exception:  # anything unexpected: treat it as floating, which is always safe
        return False
    return first[0] is _parser.AT and first[1] in (
        _parser.AT_BEGINNING,
        _parser.AT_BEGINNING_STRING,
    )


def _guards(spec: Any) -> Iterable[Guard]:
    """The single-operator text tests among a condition's conjuncts."""
    if not isinstance(spec, dict):
        return
    for key, value in spec.items():
        if key == "all" and isinstance(value, list):
            for sub in value:
                yield from _guards(sub)
        elif key == "source" and isinstance(value, dict) and set(value) == {"in"}:
            yield Guard("source", "in", value["in"], False)
        elif key in ("any", "not") or key.startswith(_UNINDEXED_PREFIXES):
            continue
        else:
            ops = dict(value) if isinstance(value, dict) else {"equals": value}
            case_sensitive = bool(ops.pop("case_sensitive", False))
            if len(ops) != 1:
                continue
            ((op, operand),) = ops.items()
            if op in _GUARD_RANK and (op != "regex" or _fusable(operand)):
                yield Guard(key, op, operand, case_sensitive)


_COMMON_FIELDS: Final = ("method", "transport", "status")  # few values: weak guards


def _best_guard(spec: Any) -> Guard | None:
    """The most selective guard: exact values before patterns, and a field
    with many values before one with a handful (every INVITE hits a guard on
    ``method = INVITE``)."""
    return min(
        _guards(spec), key=lambda g: (_GUARD_RANK[g.op], g.field in _COMMON_FIELDS), default=None
    )


_RULE_KEYS: Final = {
    "id",
    "description",
    "action",
    "mode",
    "code",
    "match",
    "references",
    "false_positives",
    "duration",
}


def compile_rule(spec: Mapping[str, Any], origin: str, index: int) -> Rule:
    where = f"{origin}: rule {spec.get('id', f'#{index + 1}')!s}"
    unknown = set(spec) - _RULE_KEYS
    if unknown:
        raise RuleError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} (valid: {', '.join(sorted(_RULE_KEYS))})"
        )
    rule_id = spec.get("id")
    if not isinstance(rule_id, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", rule_id):
        raise RuleError(f"{where}.id: a lower-case name (letters, digits, . _ -)")
    action = spec.get("action", "drop")
    if action not in ACTIONS:
        raise RuleError(f"{where}.action: {action!r} is not one of {', '.join(ACTIONS)}")
    mode = spec.get("mode", "enforce")
    if mode not in MODES:
        raise RuleError(f"{where}.mode: {mode!r} is not one of {', '.join(MODES)}")
    code = spec.get("code", 0)
    if action == "reject" and not (isinstance(code, int) and 400 <= code <= 699):
        raise RuleError(f"{where}.code: reject needs a status code from 400 to 699")
    if "match" not in spec:
        raise RuleError(f"{where}: no match table")
    fields: list[str] = []
    predicate = compile_condition(spec["match"], f"{where}.match", fields)
    duration = spec.get("duration", 0)
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0:
        raise RuleError(f"{where}.duration: the ban's length in seconds (0: the default)")
    if duration and action != "ban":
        raise RuleError(f"{where}.duration: only a ban has a duration")
    references = spec.get("references", [])
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise RuleError(f"{where}.references: a list of strings")
    return Rule(
        id=rule_id,
        action=action,
        predicate=predicate,
        description=str(spec.get("description", "")),
        mode=mode,
        code=code,
        references=tuple(references),
        false_positives=str(spec.get("false_positives", "")),
        origin=origin,
        fields=tuple(fields),
        duration=float(duration),
        guard=_best_guard(spec["match"]),
    )


def compile_rules(specs: Iterable[Mapping[str, Any]], origin: str) -> list[Rule]:
    rules = [compile_rule(spec, origin, i) for i, spec in enumerate(specs)]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise RuleError(f"{origin}: rule {rule.id}: the id is used twice")
        seen.add(rule.id)
    return rules


class _FieldIndex:
    """The guards on one field: exact values in dicts, patterns fused into one
    regex per kind, so a field is read once and tested at C speed however many
    rules name it. A pattern hit makes all its rules candidates (a superset:
    each candidate's full predicate still decides)."""

    def __init__(self, name: str) -> None:
        getter = field_getter(name)
        assert getter is not None  # the rule compiled, so the field exists
        self.getter = getter
        self.exact_folded: dict[str, list[int]] = {}
        self.exact: dict[str, list[int]] = {}
        self.needs_lower = False  # some guard compares the lower-cased value
        self._literal_folded: list[tuple[str, int]] = []  # tested on value.lower()
        self._regex_folded: list[tuple[str, int]] = []  # IGNORECASE on the value
        self._regex: list[tuple[str, int]] = []  # case-sensitive on the value
        # (compiled, test the lower-cased value?, the rules it stands for); a
        # fused regex whose parts are all anchored at the start runs as
        # match(), because search() would retry every part at every offset
        self.patterns: list[tuple[Callable[[str], object], bool, list[int]]] = []

    def add(self, guard: Guard, position: int) -> None:
        op, operand, sensitive = guard.op, guard.operand, guard.case_sensitive
        if op in ("equals", "in"):
            table = self.exact if sensitive else self.exact_folded
            for item in operand if op == "in" else [operand]:
                key = str(item) if sensitive else str(item).lower()
                table.setdefault(key, []).append(position)
            return
        if op == "regex":
            (self._regex if sensitive else self._regex_folded).append((operand, position))
            return
        text = re.escape(str(operand) if sensitive else str(operand).lower())
        literal = {"prefix": rf"\A{text}", "suffix": rf"{text}\Z", "contains": text}[op]
        (self._regex if sensitive else self._literal_folded).append((literal, position))

    def finish(self) -> None:
        self.needs_lower = bool(self.exact_folded or self._literal_folded)
        for parts, flags, on_lower in (
            (self._literal_folded, 0, True),
            (self._regex_folded, re.IGNORECASE, False),
            (self._regex, 0, False),
        ):
            anchored = [(p, pos) for p, pos in parts if _anchored(p)]
            floating = [(p, pos) for p, pos in parts if not _anchored(p)]
            if floating and len(anchored) <= 2:  # cheaper as part of the one search()
                anchored, floating = [], parts
            for group, method in ((anchored, "match"), (floating, "search")):
                if group:
                    fused = re.compile("|".join(f"(?:{p})" for p, _ in group), flags)
                    test = getattr(fused, method)
                    self.patterns.append((test, on_lower, [pos for _, pos in group]))


class _SourceIndex:
    """Guards on the sender's address: the networks are tested once per
    source, and the answer kept in a bounded cache (cleared when full: UDP
    sources can be spoofed by the million)."""

    CACHE: Final = 65_536

    def __init__(self) -> None:
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int]] = []
        self._cache: dict[str, list[int]] = {}

    def add(self, guard: Guard, position: int) -> None:
        for item in guard.operand:
            self._networks.append((ipaddress.ip_network(str(item), strict=False), position))

    def finish(self) -> None:
        pass

    def candidates(self, ctx: Context, out: list[int]) -> None:
        host = ctx.source.host
        hits = self._cache.get(host)
        if hits is None:
            try:
                ip = ipaddress.ip_address(host)
                hits = sorted({pos for net, pos in self._networks if ip in net})
            except ValueError:
                hits = []
            if len(self._cache) >= self.CACHE:
                self._cache.clear()
            self._cache[host] = hits
        out.extend(hits)


def _compile_candidates(
    indexes: list[_FieldIndex | _SourceIndex],
) -> Callable[[Context], list[int]]:
    """One straight-line function over every index: what ``candidates`` of
    each would do, without a call, a loop and attribute lookups per field
    (the cost that dominates on a clean message). The generated source holds
    only names made here; every operand lives in the namespace, so nothing an
    operator writes becomes code."""
    names: dict[str, object] = {}
    lines = ["def candidates(ctx):", "    hits = []"]
    for i, index in enumerate(indexes):
        if isinstance(index, _SourceIndex):
            names[f"s{i}"] = index.candidates
            lines.append(f"    s{i}(ctx, hits)")
            continue
        names[f"g{i}"] = index.getter
        lines += [
            f"    v = g{i}(ctx)",
            "    if v is not None:",
            "        t = v if v.__class__ is str else str(v)",
        ]
        if index.needs_lower:
            lines.append("        f = t.lower()")
        if index.exact:
            names[f"e{i}"] = index.exact
            lines += [f"        h = e{i}.get(t)", "        if h: hits += h"]
        if index.exact_folded:
            names[f"x{i}"] = index.exact_folded
            lines += [f"        h = x{i}.get(f)", "        if h: hits += h"]
        for j, (test, on_lower, positions) in enumerate(index.patterns):
            names[f"p{i}_{j}"], names[f"r{i}_{j}"] = test, positions
            lines.append(
                f"        if p{i}_{j}({'f' if on_lower else 't'}) is not None: hits += r{i}_{j}"
            )
    lines.append("    return hits")
    exec("\n".join(lines), names)  # our own identifiers only (see above)
    return names["candidates"]  # type: ignore[return-value]


class RuleSet:
    """Compiled rules in order, with hit counters per rule.

    ``evaluate`` returns the first enforcing rule that matches (or None) and
    counts, without acting on them, the monitor-mode rules that matched
    before it, so a new rule can be tried on live traffic safely.

    Rules are indexed by their guard (see ``Guard``): a message is tested
    only against the unguarded rules and those whose guard its fields hit,
    still in file order, so the first match is the same as testing every
    rule, at a cost that grows with the fields named, not the rules.
    """

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.hits: dict[str, int] = dict.fromkeys((r.id for r in rules), 0)
        self.monitored: dict[str, int] = dict.fromkeys((r.id for r in rules), 0)
        # told of each monitor-mode match (the pipeline logs a few)
        self.on_monitor: Callable[[Rule, Context], None] | None = None
        self._unguarded: list[int] = []
        indexes: dict[str, _FieldIndex | _SourceIndex] = {}
        for position, rule in enumerate(rules):
            if rule.guard is None:
                self._unguarded.append(position)
            else:
                field = rule.guard.field
                index = indexes.get(field)
                if index is None:
                    index = indexes[field] = (
                        _SourceIndex() if field == "source" else _FieldIndex(field)
                    )
                index.add(rule.guard, position)
        for index in indexes.values():
            index.finish()
        self._indexes = list(indexes.values())
        self._candidates = _compile_candidates(self._indexes)

    def evaluate(self, ctx: Context) -> Rule | None:
        hits = self._candidates(ctx)
        positions = sorted(set(hits).union(self._unguarded)) if hits else self._unguarded
        rules = self.rules
        for position in positions:
            rule = rules[position]
            if rule.predicate(ctx):
                if rule.mode == "monitor":
                    self.monitored[rule.id] += 1
                    if self.on_monitor is not None:
                        self.on_monitor(rule, ctx)
                    continue
                self.hits[rule.id] += 1
                return rule
        return None

    def matching(self, ctx: Context) -> list[Rule]:
        """Every rule that matches, in order, without the index or counting
        (for ``explain``, and the reference the index is tested against)."""
        return [rule for rule in self.rules if rule.predicate(ctx)]
