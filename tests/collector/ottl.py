"""A small interpreter for the part of OTTL that ``factorylens otel-config`` generates, with the transform
processor's semantics (grouped statements, context inferred per group, ORed group conditions, ``set`` of nil does
nothing, integer division truncates, int and float never mix in arithmetic), so the tests can run the committed
agent.yaml's statements on data and compare the result with the registry and with the RCA service's processor.

It knows only the functions and paths listed below and raises on anything else, which is also a check that the
generated text sticks to them (each is in the transform processor's README or OTTL's function list).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EDITORS = {"set", "delete_key", "replace_pattern", "copy_metric", "convert_sum_to_gauge", "convert_gauge_to_sum"}
CONVERTERS = {"Int", "Double", "Bool", "IsMatch", "HasPrefix"}
PATHS = frozenset(
    {
        "datapoint.attributes",
        "datapoint.value_double",
        "datapoint.value_int",
        "metric.name",
        "metric.unit",
        "metric.description",
        "resource.attributes",
        "scope.name",
    }
)


@dataclass
class Point:
    attributes: dict[str, Any]
    value: int | float


@dataclass
class Metric:
    name: str
    points: list[Point]
    kind: str = "gauge"  # or "sum"
    monotonic: bool = False
    unit: str = ""
    description: str = ""


@dataclass
class Batch:
    """One resource with one scope: what one scrape or one SDK export carries."""

    metrics: list[Metric]
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""


@dataclass
class Ctx:
    batch: Batch
    metric: Metric | None = None
    point: Point | None = None


class OttlError(ValueError):
    pass


# ---------------------------------------------------------------------------- parsing

TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:\\.|[^"\\])*")|(?P<num>\d+(?:\.\d*)?)|(?P<op>==|!=|[()\[\],.*/+=-])|(?P<id>\w+))'
)


def tokenize(text: str) -> list[tuple[str, Any]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise OttlError(f"cannot read {text[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup
        raw = m.group(kind)
        if kind == "str":
            tokens.append(("str", json.loads(raw)))
        elif kind == "num":
            tokens.append(("num", float(raw) if "." in raw else int(raw)))
        else:
            tokens.append((kind, raw))
    return tokens


Getter = Callable[[Ctx], Any]


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.paths: set[str] = set()  # context names used, for inference

    def peek(self, offset: int = 0) -> tuple[str, Any] | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise OttlError(f"expected {value!r}, got {tok!r}")
        self.i += 1
        return tok

    def done(self) -> None:
        if self.peek() is not None:
            raise OttlError(f"unexpected {self.peek()!r}")

    # statements and conditions
    def statement(self) -> Callable[[Ctx], None]:
        name = self.take()[1]
        if name not in EDITORS:
            raise OttlError(f"unknown editor {name}")
        args, kwargs = self.arguments()
        cond = self.where()
        self.done()
        return _editor(name, args, kwargs, cond)

    def where(self) -> Getter | None:
        if self.peek() == ("id", "where"):
            self.take()
            return self.boolean()
        return None

    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        self.take("(")
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        while self.peek() != ("op", ")"):
            if self.peek(1) == ("op", "=") and self.peek()[0] == "id":
                key = self.take()[1]
                self.take("=")
                kwargs[key] = self.value()
            else:
                args.append(self.value())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        return args, kwargs

    def boolean(self) -> Getter:
        left = self.conjunction()
        while self.peek() == ("id", "or"):
            self.take()
            right = self.conjunction()
            left = (lambda a, b: lambda c: bool(a(c)) or bool(b(c)))(left, right)
        return left

    def conjunction(self) -> Getter:
        left = self.negation()
        while self.peek() == ("id", "and"):
            self.take()
            right = self.negation()
            left = (lambda a, b: lambda c: bool(a(c)) and bool(b(c)))(left, right)
        return left

    def negation(self) -> Getter:
        if self.peek() == ("id", "not"):
            self.take()
            inner = self.negation()
            return lambda c: not inner(c)
        if self.peek() == ("op", "("):
            self.take()
            inner = self.boolean()
            self.take(")")
            return inner
        left = self.value()
        tok = self.peek()
        if tok in (("op", "=="), ("op", "!=")):
            self.take()
            right = self.value()
            equal = tok[1] == "=="
            return lambda c: _equal(left(c), right(c)) == equal
        return left  # a converter returning a boolean

    # values
    def value(self) -> Getter:
        left = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            right = self.term()
            left = _arith(op, left, right)
        return left

    def term(self) -> Getter:
        left = self.factor()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.take()[1]
            right = self.factor()
            left = _arith(op, left, right)
        return left

    def factor(self) -> Getter:
        kind, val = self.take()
        if kind in ("str", "num"):
            return lambda c: val
        if (kind, val) == ("op", "("):
            inner = self.value()
            self.take(")")
            return inner
        if kind != "id":
            raise OttlError(f"unexpected {val!r}")
        if val in ("nil", "true", "false"):
            constant = {"nil": None, "true": True, "false": False}[val]
            return lambda c: constant
        if self.peek() == ("op", "("):
            if val not in CONVERTERS:
                raise OttlError(f"unknown converter {val}")
            args, _ = self.arguments()
            return _converter(val, args)
        return self.path(val)

    def path(self, context: str) -> Getter:
        parts = [context]
        while self.peek() == ("op", "."):
            self.take()
            parts.append(self.take()[1])
        key = None
        if self.peek() == ("op", "["):
            self.take()
            key = self.take()[1]
            self.take("]")
        self.paths.add(context)
        return _Path(".".join(parts), key)


class _Path:
    """A readable and writable path; called, it reads."""

    def __init__(self, path: str, key: str | None) -> None:
        if path not in PATHS:
            raise OttlError(f"unknown path {path}")
        self.path, self.key = path, key

    def _map(self, c: Ctx) -> dict[str, Any]:
        if self.path == "datapoint.attributes":
            assert c.point is not None
            return c.point.attributes
        return c.batch.resource

    def __call__(self, c: Ctx) -> Any:
        if self.path.endswith("attributes"):
            mapping = self._map(c)
            return mapping if self.key is None else mapping.get(self.key)
        if self.path == "datapoint.value_double":
            value = c.point.value
            return value if isinstance(value, float) else 0.0
        if self.path == "datapoint.value_int":
            value = c.point.value
            return value if isinstance(value, int) else 0
        if self.path == "scope.name":
            return c.batch.scope
        return getattr(c.metric, self.path.split(".")[1])

    def set(self, c: Ctx, value: Any) -> None:
        if self.path.endswith("attributes"):
            self._map(c)[self.key] = value
        elif self.path == "datapoint.value_double":
            c.point.value = float(value)
        elif self.path == "datapoint.value_int":
            c.point.value = int(value)
        else:
            setattr(c.metric, self.path.split(".")[1], value)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _arith(op: str, left: Getter, right: Getter) -> Getter:
    def run(c: Ctx) -> Any:
        a, b = left(c), right(c)
        if type(a) is not type(b) or not isinstance(a, (int, float)):
            raise OttlError(f"math on {type(a).__name__} and {type(b).__name__}")
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if isinstance(a, int):  # Go: truncating integer division
            quotient = abs(a) // abs(b)
            return quotient if (a >= 0) == (b > 0) else -quotient
        return a / b

    return run


def _int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)  # truncation, as Go's int64(f)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    return None


def _double(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None if value is None else float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except ValueError:
        return None


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}.get(value.lower())
    return None


def _converter(name: str, args: list[Getter]) -> Getter:
    if name == "Int":
        return lambda c: _int(args[0](c))
    if name == "Double":
        return lambda c: _double(args[0](c))
    if name == "Bool":
        return lambda c: _bool(args[0](c))
    if name == "IsMatch":
        return lambda c: isinstance(args[0](c), str) and re.search(args[1](c), args[0](c)) is not None
    return lambda c: isinstance(args[0](c), str) and args[0](c).startswith(args[1](c))  # HasPrefix


def _editor(name: str, args: list[Getter], kwargs: dict[str, Getter], cond: Getter | None) -> Callable[[Ctx], None]:
    def run(c: Ctx) -> None:
        if cond is not None and not cond(c):
            return
        if name == "set":
            value = args[1](c)
            if value is not None:
                args[0].set(c, value)
        elif name == "delete_key":
            args[0](c).pop(args[1](c), None)
        elif name == "replace_pattern":
            value = args[0](c)
            if isinstance(value, str):
                args[0].set(c, re.sub(args[1](c), args[2](c), value))
        elif name == "copy_metric":
            clone = copy.deepcopy(c.metric)
            clone.name = kwargs["name"](c)
            c.batch.metrics.append(clone)
        elif name == "convert_sum_to_gauge":
            if c.metric.kind == "sum":
                c.metric.kind, c.metric.monotonic = "gauge", False
        elif c.metric.kind == "gauge":  # convert_gauge_to_sum(temporality, monotonic)
            c.metric.kind, c.metric.monotonic = "sum", bool(args[1](c))

    return run


# ---------------------------------------------------------------------------- running groups


@dataclass
class Group:
    context: str
    conditions: list[Getter]
    statements: list[Callable[[Ctx], None]]


CONTEXT_ORDER = ("datapoint", "metric", "scope", "resource")  # inferred: the lowest context any path needs


def compile_group(raw: dict[str, Any] | str) -> Group:
    entry = {"statements": [raw]} if isinstance(raw, str) else raw
    used: set[str] = set()
    conditions, statements = [], []
    for text in entry.get("conditions", []):
        parser = Parser(text)
        conditions.append(parser.boolean())
        parser.done()
        used |= parser.paths
    for text in entry["statements"]:
        parser = Parser(text)
        statements.append(parser.statement())
        used |= parser.paths
        name = text.split("(", 1)[0]
        if name.startswith(("copy_metric", "convert_")):
            used.add("metric")
    context = next(c for c in CONTEXT_ORDER if c in used)
    if context != "metric" and any(t.split("(", 1)[0].startswith(("copy_", "convert_")) for t in entry["statements"]):
        raise OttlError(f"metric-only functions in a {context} group")
    return Group(context, conditions, statements)


def run(groups: list[dict[str, Any] | str], batch: Batch) -> Batch:
    """Run a transform processor's ``metric_statements`` on ``batch`` (in place; returned for convenience)."""
    for group in map(compile_group, groups):
        contexts: list[Ctx]
        if group.context == "datapoint":
            contexts = [Ctx(batch, m, p) for m in list(batch.metrics) for p in m.points]
        elif group.context == "metric":
            contexts = []
            index = 0
            while index < len(batch.metrics):  # copies are appended and seen by the same group
                _apply(group, Ctx(batch, batch.metrics[index]))
                index += 1
        else:
            contexts = [Ctx(batch)]
        for ctx in contexts:
            _apply(group, ctx)
    return batch


def _apply(group: Group, ctx: Ctx) -> None:
    if group.conditions and not any(cond(ctx) for cond in group.conditions):
        return
    for statement in group.statements:
        statement(ctx)
