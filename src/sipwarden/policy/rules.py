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

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

from ..proxy.flow import Flow
from ..sip import Peek, SipError
from ..sip.names import header_key

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
    source: Flow
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
    body = ctx.view.body
    at = body.find(b"\ns=")
    if at < 0:
        return None
    end = body.find(b"\n", at + 3)
    return body[at + 3 : end if end >= 0 else len(body)].rstrip(b"\r").decode("utf-8", "replace")


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
            return lambda ctx: _first_value(ctx.view, key)
        return lambda ctx: _all_values(ctx.view, key)
    return None


def _first_value(view: Peek, key: str) -> str | None:
    from ..sip.peek import _KEYS

    if key in _KEYS:
        return view.raw(_KEYS.index(key))
    value: str | None = _message(view).get(key)
    return value


def _all_values(view: Peek, key: str) -> list[str] | None:
    values = _message(view).get_all(key)
    return values or None


def _message(view: Peek) -> Any:
    """The full parse, for headers the hot-path view does not index (cached on the view)."""
    from ..sip import parse

    msg = view._cache.get("message")
    if msg is None:
        msg = view._cache["message"] = parse(view.data)
    return msg


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


_RULE_KEYS: Final = {
    "id",
    "description",
    "action",
    "mode",
    "code",
    "match",
    "references",
    "false_positives",
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
    )


def compile_rules(specs: Iterable[Mapping[str, Any]], origin: str) -> list[Rule]:
    rules = [compile_rule(spec, origin, i) for i, spec in enumerate(specs)]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise RuleError(f"{origin}: rule {rule.id}: the id is used twice")
        seen.add(rule.id)
    return rules


class RuleSet:
    """Compiled rules in order, with hit counters per rule.

    ``evaluate`` returns the first enforcing rule that matches (or None) and
    counts, without acting on them, the monitor-mode rules that matched
    before it, so a new rule can be tried on live traffic safely.
    """

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.hits: dict[str, int] = dict.fromkeys((r.id for r in rules), 0)
        self.monitored: dict[str, int] = dict.fromkeys((r.id for r in rules), 0)

    def evaluate(self, ctx: Context) -> Rule | None:
        for rule in self.rules:
            if rule.predicate(ctx):
                if rule.mode == "monitor":
                    self.monitored[rule.id] += 1
                    continue
                self.hits[rule.id] += 1
                return rule
        return None
