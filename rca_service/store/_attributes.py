"""Decoding OTLP attribute values to Python with a bounded cost, whatever the sender nests.

An ``AnyValue`` can be a key-value list or array nested as deep as the protobuf decoder allows
(100 messages), with strings of any length. The store keeps attribute values as scalars, arrays and
maps as one JSON string; that string is built once from a bounded plain tree, so its cost is linear
in what is kept, never in what was sent. The limits follow the OTel SDK's names
(``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``, ``OTEL_ATTRIBUTE_COUNT_LIMIT``) with finite defaults of our
own, plus a nesting depth (``FACTORYLENS_ATTRIBUTE_DEPTH_LIMIT``) that the SDK does not have.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ELLIPSIS = "…"
MAX_METRIC_NAME = 255  # the OTel API's instrument-name limit
MAX_UNIT = 63  # the OTel API's unit limit


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a positive integer") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r}: expected a positive integer")
    return value


@dataclass(frozen=True)
class AttributeLimits:
    """
    :param value_length: characters kept of a string value, or of an array/map's JSON
    :param count: attributes kept per point, span, log record or resource (the rest are dropped)
    :param depth: nesting levels of arrays and maps kept (deeper levels become ``"…"``)
    """

    value_length: int = field(default_factory=lambda: _env_int("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", 1024))
    count: int = field(default_factory=lambda: _env_int("OTEL_ATTRIBUTE_COUNT_LIMIT", 128))
    depth: int = field(default_factory=lambda: _env_int("FACTORYLENS_ATTRIBUTE_DEPTH_LIMIT", 8))

    def validate(self) -> None:
        if min(self.value_length, self.count, self.depth) < 1:
            raise ValueError("attribute limits (value_length, count, depth) must be at least 1")


class AttributeDecoder:
    """AnyValue → Python under :class:`AttributeLimits`; counts what it had to cut."""

    def __init__(self, limits: AttributeLimits | None = None) -> None:
        self.limits = limits or AttributeLimits()
        self.limits.validate()
        self.truncated = 0  # values or attribute lists cut (read by /metrics; a racy count is fine)

    def value(self, value: Any) -> Any:
        """A scalar as itself (strings and bytes cut to the length limit), an array or map as JSON."""
        kind = value.WhichOneof("value")
        if kind is None:
            return ""
        limit = self.limits.value_length
        if kind == "string_value":
            text = value.string_value
            if len(text) > limit:
                self.truncated += 1
                return text[:limit]
            return text
        if kind == "bytes_value":
            raw = value.bytes_value
            if 2 * len(raw) > limit:
                self.truncated += 1
                return raw[: limit // 2].hex()
            return raw.hex()
        if kind in ("array_value", "kvlist_value"):
            budget = [limit, 0]
            plain = self._plain(value, self.limits.depth, budget)
            text = json.dumps(plain, default=str, ensure_ascii=False)
            if budget[0] < 0 or budget[1] or len(text) > limit:
                self.truncated += 1
                return text[:limit]
            return text
        return getattr(value, kind)

    def _plain(self, value: Any, depth: int, budget: list[int]) -> Any:
        """A plain tree of at most ``depth`` levels and about ``budget`` characters: each node
        is visited once and the walk stops when the budget is spent, so hostile input costs at most
        what is kept. ``budget`` is ``[characters left, whether a level was cut]``."""
        if budget[0] < 0:
            return ELLIPSIS
        kind = value.WhichOneof("value")
        if kind == "array_value" or kind == "kvlist_value":
            if depth <= 0:
                budget[0] -= 1
                budget[1] = 1
                return ELLIPSIS
            if kind == "array_value":
                out_list = []
                for item in value.array_value.values:
                    if budget[0] < 0:
                        break
                    out_list.append(self._plain(item, depth - 1, budget))
                    budget[0] -= 2
                return out_list
            out_map = {}
            for kv in value.kvlist_value.values:
                if budget[0] < 0:
                    break
                key = kv.key[: budget[0] + 1]
                budget[0] -= len(key) + 4
                out_map[key] = self._plain(kv.value, depth - 1, budget)
            return out_map
        if kind == "string_value":
            text = value.string_value[: max(budget[0], 0) + 1]
            budget[0] -= len(text) + 2
            return text
        if kind == "bytes_value":
            text = value.bytes_value[: max(budget[0], 0) // 2 + 1].hex()
            budget[0] -= len(text) + 2
            return text
        budget[0] -= 8
        return "" if kind is None else getattr(value, kind)

    def attributes(self, attributes: Iterable[Any]) -> dict[str, Any]:
        """Key-values → a dict, at most ``count`` of them, keys and values cut to the length limit."""
        limits = self.limits
        out: dict[str, Any] = {}
        for n, kv in enumerate(attributes):
            if n >= limits.count:
                self.truncated += 1
                break
            key = kv.key
            if len(key) > limits.value_length:
                self.truncated += 1
                key = key[: limits.value_length]
            out[key] = self.value(kv.value)
        return out

    def text(self, text: str) -> str:
        if len(text) > self.limits.value_length:
            self.truncated += 1
            return text[: self.limits.value_length]
        return text


DICT_BYTES = 64


def attribute_nbytes(key: str, value: Any) -> int:
    """Rough bytes one decoded attribute holds in a dict (its slot, key and value)."""
    return 48 + len(key) + (len(value) if isinstance(value, str) else 8)


def attributes_nbytes(attributes: dict[str, Any]) -> int:
    """Rough bytes a decoded attribute dict holds (keys, values and the dict's own slots)."""
    return DICT_BYTES + sum(attribute_nbytes(k, v) for k, v in attributes.items())
