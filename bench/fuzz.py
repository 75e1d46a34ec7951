"""RCA service under hostile OTLP: structure-aware and byte-mutation fuzzing of MetricsService,
TraceService and LogsService Export against one ``factorylens rca serve`` subprocess.

Method. One service subprocess (the real CLI, a temporary data directory, ``--analysis-interval``
small so the analysis runs while cases arrive) is driven through raw gRPC stubs that send request
bytes. Each case is one Export of one request carrying several items:

* structure-aware cases are valid protobuf messages built with the generated opentelemetry-proto
  classes, drawn from strategies modelled on hypothesis' (boundary values first): huge, NaN (with
  odd payloads), infinite, negative and subnormal numbers; strings from empty to 1 MiB and unicode;
  AnyValue kvlist/array nesting up to ~130 levels; thousands of attributes; histograms with up to
  10,000 buckets and NaN/infinite/unsorted bounds; exponential histograms with extreme scales and
  offsets; summaries; zero, far-past and far-future (up to 2**64-1) timestamps; one series with up
  to 20,000 points 1 us - 2 ms apart; up to 5,000 series in a request; spans with odd id lengths,
  events and links; log records with deep bodies.
* mutation cases take real serialized requests (realistic ones and small generated ones) and apply
  1-4 of: bit flips, interesting bytes, insertion/deletion, truncation, splicing two requests (any
  signals), chunk duplication, length-field corruption (found by walking the wire format: zero,
  off by one, huge, 10-byte varints), wire-type and field-number changes; sent to any of the three
  services.
* known cases (first, unless ``--no-known``): the reported hostile inputs, one each: kvlist
  attributes nested 28/30/120 levels, array log bodies nested 120 levels, 1 MiB attribute values,
  far-future/far-past timestamps, NaN histogram bounds, 20,000 points 2 ms and 1 us apart on one
  series (followed by Health polling over three analysis intervals), 5,000 series, 5,000 attributes.

For every case the Export must answer within 10 s (else a hang) and a Health call right after within
1 s (else a hang); the process must be alive (else a crash). A crash or hang is recorded (with the
request bytes under ``--findings``), the service killed and restarted, and fuzzing goes on. After
a crash the harness first restarts on the same data directory (the request is in the WAL: a crash
loop there is reported as a poison record), then, if that fails, on a fresh one. A watchdog samples
the service's RSS every 20 ms; above ``--rss-limit-mb`` it kills it (a crash: out of memory). Valid
(structure-aware or known) requests refused whole (INVALID_ARGUMENT) and server errors
(UNKNOWN/INTERNAL) are counted too; they fail the run only with ``--strict``.

The generators draw through a small ``Draw`` interface with two backends: ``RandomDraw`` (a seeded
``random.Random`` with hypothesis-like boundary bias; the default: ~5 ms a structure case, ~0.4 ms
a mutation, ~21 cases/s against the service on 2 cores) and ``HypothesisDraw``
(``hypothesis.strategies`` through ``@given(st.data())``, ``--engine hypothesis``: the same
generators, each case a function of its choices alone, but ~60 ms of generation a case, ~9 cases/s).
Bulk data (thousands of points) comes from one drawn seed, so a case is a few hundred draws at most.
Each case gets a budget of 0-2 big and 0-2 deep features, so it stays cheap and a finding points at
something. ``tests/rca/test_hostile_fuzz.py`` imports this module.

Usage: python bench/fuzz.py [--cases 10000] [--max-seconds 600] [--seed 0] [--max-memory-mb 2048]
                            [--rss-limit-mb 4096] [--engine random|hypothesis] [--findings DIR] [--strict]
       python bench/fuzz.py --replay DIR_OR_FILES...     # resend saved findings to a fresh service
Last line: {"bench": "fuzz", "cases": n, "crashes": n, "hangs": n, "max_rss_mb": x}
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import re
import signal as signals
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from factorylens.rca_service.api.v1 import rca_pb2, rca_pb2_grpc

SIGNALS = ("metrics", "traces", "logs")
METHODS = {
    "metrics": (
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
        "rejected_data_points",
    ),
    "traces": (
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
        "rejected_spans",
    ),
    "logs": (
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
        "rejected_log_records",
    ),
}
EXPORT_TIMEOUT_S = 10.0
RETRY_TRAILERS = ("google.rpc.retryinfo-bin", "grpc-status-details-bin")  # UNAVAILABLE as backpressure
DROPPED = "UNAVAILABLE without RetryInfo"  # the connection broke (socket closed, reset) with the process up
HEALTH_TIMEOUT_S = 1.0
START_TIMEOUT_S = 60.0
PROBE_START_TIMEOUT_S = 30.0  # restart on the crashed service's data dir (WAL replay of the case)
WATCHDOG_PERIOD_S = 0.02
IDLE_WINDOWS = 3  # after a dense case: this many 1 s windows with no requests ...
IDLE_BUSY_SHARE = 0.9  # ... each with the service busier than this share of a core = a stuck analysis
PROGRESS_EVERY_S = 5.0
MAX_MESSAGE_MB = 64
NS = 1_000_000_000
DAY_NS = 86_400 * NS
YEAR_NS = 365 * DAY_NS
U64 = 2**64 - 1
I64 = 2**63 - 1
CORPUS_MAX_BYTES = 32 << 10
CORPUS_PER_SIGNAL = 200

# ---- draws --------------------------------------------------------------------------------------
T = Any


class Draw:
    """What the generators draw from; subclasses decide where the choices come from."""

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def boolean(self, p: float = 0.5) -> bool:
        return self.integer(0, 9_999) < p * 10_000

    def choice(self, options: Sequence[T]) -> T:
        return options[self.integer(0, len(options) - 1)]

    def weighted(self, options: Sequence[tuple[float, T]]) -> T:
        """One of ``(weight, value)``; a value that is callable is called (so it can draw more)."""
        total = sum(w for w, _ in options)
        x = self.integer(0, 999_999) / 1_000_000 * total
        for w, value in options:
            if x < w:
                return value() if callable(value) else value
            x -= w
        value = options[-1][1]
        return value() if callable(value) else value

    def seed(self) -> int:
        """A seed for bulk data (thousands of points), so a case costs a few draws whatever its size."""
        return self.integer(0, 2**32 - 1)


class RandomDraw(Draw):
    """A seeded ``random.Random``, biased like hypothesis towards the ends of every range."""

    def __init__(self, seed: Any) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        r = self.rng.random()
        if r < 0.04 and hi > lo:
            return lo if r < 0.02 else hi
        return self.rng.randint(lo, hi)

    def boolean(self, p: float = 0.5) -> bool:
        return self.rng.random() < p

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def weighted(self, options: Sequence[tuple[float, T]]) -> T:
        total = sum(w for w, _ in options)
        x = self.rng.random() * total
        for w, value in options:
            if x < w:
                return value() if callable(value) else value
            x -= w
        value = options[-1][1]
        return value() if callable(value) else value

    def seed(self) -> int:
        return self.rng.getrandbits(32)


class HypothesisDraw(Draw):
    """Choices from ``hypothesis.strategies`` through a ``st.data()`` object (inside ``@given``)."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self._st = st
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(self._st.integers(lo, hi))

    def _uniform(self) -> float:
        """In [0, 1), spread: hypothesis favours small integers (95% of draws would take the first of
        weighted options), so decisions hash the drawn integer; value ranges keep the bias."""
        x = self.data.draw(self._st.integers(0, 2**32 - 1))
        return ((x * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64) / 2**64

    def boolean(self, p: float = 0.5) -> bool:
        return self._uniform() < p

    def choice(self, options: Sequence[T]) -> T:
        return self.data.draw(self._st.sampled_from(options))

    def weighted(self, options: Sequence[tuple[float, T]]) -> T:
        total = sum(w for w, _ in options)
        x = self._uniform() * total
        for w, value in options:
            if x < w:
                return value() if callable(value) else value
            x -= w
        value = options[-1][1]
        return value() if callable(value) else value


# ---- values -------------------------------------------------------------------------------------
def _f64(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


FLOAT_EDGES = (
    math.nan,
    -math.nan,
    _f64(0x7FF0000000000001),
    _f64(0xFFF8000000000001),
    _f64(0x7FFFFFFFFFFFFFFF),
    math.inf,
    -math.inf,
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1e-300,
    1e300,
    float(2**53),
    float(2**53 + 2),
    float(2**63),
    float(2**64),
    -float(2**63),
    1.0,
    -1.0,
    0.5,
    100.0,
)
INT64_EDGES = (0, 1, -1, 2**31 - 1, -(2**31), 2**32, 2**53 + 1, I64, -I64 - 1, -I64)
UINT64_EDGES = (0, 1, 2**31, 2**32, 2**53 + 1, I64, 2**63, U64)
UINT32_EDGES = (0, 1, 2**31 - 1, 2**31, 2**32 - 1)
INT32_EDGES = (0, 1, -1, 2**31 - 1, -(2**31))
ASCII = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:{}[]\"'\\ %$#*"
UNICODE = (
    "\x00",
    "\x01",
    "\x7f",
    "\u00e9",
    "\u0301",
    "\u200b",
    "\u200f",
    "\u202e",
    "\ufeff",
    "\uffff",
    "\u4e2d",
    "\U0001f525",
    "\U0010ffff",
    "\n",
    "\t",
    "\\",
    '"',
    "%s",
    "{}",
    "\u0000\u0000",
)
KEYS = (
    "service.name",
    "host.name",
    "hw.id",
    "gpu.index",
    "hw.type",
    "k8s.pod.name",
    "k8s.node.name",
    "factorylens.job.id",
    "job.id",
    "span.kind",
    "event.name",
    "quantile",
    "le",
    "otel.scope.name",
    "http.route",
    "rpc.method",
    "server.address",
    "network.interface.name",
    "disk.device",
)
KPI_METRICS = (
    "factorylens.train.step.duration",
    "factorylens.train.samples.rate",
    "factorylens.train.tokens.rate",
    "factorylens.train.goodput",
    "http.server.request.duration",
    "rpc.server.duration",
)
METRIC_NAMES = (
    "hw.gpu.utilization",
    "hw.gpu.memory.usage",
    "hw.temperature",
    "hw.power",
    "hw.errors",
    "hw.gpu.xid",
    "hw.energy",
    "system.cpu.utilization",
    "system.memory.usage",
    "system.network.io",
    "system.disk.io",
    "factorylens.data.read.duration",
    "process.runtime.gc",
)
SPACINGS_NS = (1_000, 10_000, 100_000, 1_000_000, 2_000_000)  # dense series: 1 us to 2 ms apart
MAJOR = re.compile(r"depth|KiB|points|series|attributes|buckets|spans|records|events")  # listed first


@dataclass
class Gen:
    """One case being generated: the draws, wall-clock now, and the notable features it got."""

    d: Draw
    now: int
    features: list[str] = field(default_factory=list)
    big: int = -1  # big features (MiB strings, thousands of points/attributes/series) this case may still get
    deep: int = -1  # deeply nested values this case may still get

    def __post_init__(self) -> None:
        # a few hostile features a case, so that a case stays cheap and a finding points at something
        if self.big < 0:
            self.big = self.d.weighted([(55, 0), (38, 1), (7, 2)])
        if self.deep < 0:
            self.deep = self.d.weighted([(75, 0), (20, 1), (5, 2)])

    def note(self, feature: str) -> None:
        if len(self.features) < 24 and feature not in self.features:
            if MAJOR.search(feature):
                self.features.insert(sum(1 for f in self.features if MAJOR.search(f)), feature)
            else:
                self.features.append(feature)

    def w_big(self, weight: float) -> float:
        """``weight`` while a big feature is left, else 0 (for ``Draw.weighted``)."""
        return weight if self.big > 0 else 0

    def use_big(self) -> None:
        self.big -= 1

    def w_deep(self, weight: float) -> float:
        return weight if self.deep > 0 else 0


def draw_float(g: Gen) -> float:
    d = g.d
    kind = d.integer(0, 99)
    if kind < 25:
        value = d.choice(FLOAT_EDGES)
        if value != value or value in (math.inf, -math.inf):
            g.note("non-finite value")
        return value
    if kind < 35:
        return _f64(random.Random(d.seed()).getrandbits(64))  # any bit pattern: subnormals, NaN payloads
    return d.integer(-(10**6), 10**6) / d.choice((1, 3, 1000, 1e6))


def draw_int(g: Gen, edges: Sequence[int] = INT64_EDGES, lo: int = -(2**63), hi: int = I64) -> int:
    d = g.d
    if d.boolean(0.4):
        return d.choice(edges)
    return d.integer(max(lo, -(10**6)), min(hi, 10**6)) if d.boolean(0.7) else d.integer(lo, hi)


def _filled(rng: random.Random, n: int, alphabet: str = ASCII) -> str:
    block = "".join(rng.choice(alphabet) for _ in range(min(n, 512)))
    return (block * (n // max(1, len(block)) + 1))[:n]


def draw_text(g: Gen, *, allow_huge: bool = True) -> str:
    d = g.d
    kind = d.weighted(
        [
            (40, "short"),
            (15, "unicode"),
            (8, "empty"),
            (6, "long"),
            (4, "boundary"),
            (g.w_big(0.6) if allow_huge else 0, "huge"),
        ]
    )
    if kind == "empty":
        return ""
    if kind == "short":
        return "".join(d.choice(ASCII) for _ in range(d.integer(1, 12)))
    if kind == "unicode":
        return "".join(d.choice(UNICODE) if d.boolean(0.6) else d.choice(ASCII) for _ in range(d.integer(1, 8)))
    rng = random.Random(d.seed())
    if kind == "long":
        return _filled(rng, d.integer(200, 3000))
    if kind == "boundary":  # around the service's text limits
        n = d.choice(
            (255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 65536)
            if g.big > 0 and d.boolean(0.2)
            else (255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097)
        )
        if n > 4097:
            g.use_big()
        g.note(f"string {n} chars")
        return _filled(rng, n, ASCII + "\u00e9\U0001f525")
    g.use_big()
    n = d.choice((64 << 10, (1 << 20) - 1, 1 << 20, (1 << 20) + 1))
    g.note(f"string {n >> 10} KiB")
    return _filled(rng, n)


def draw_key(g: Gen) -> str:
    d = g.d
    return d.weighted(
        [
            (60, lambda: d.choice(KEYS)),
            (30, lambda: draw_text(g, allow_huge=False)),
            (g.w_big(0.3), lambda: _huge_key(g)),
        ]
    )


def _huge_key(g: Gen) -> str:
    g.use_big()
    g.note("key 64 KiB")
    return _filled(random.Random(g.d.seed()), 1 << 16)


def draw_bytes(g: Gen, lengths: Sequence[int] = (0, 1, 4, 8, 15, 16, 17, 32, 1000)) -> bytes:
    n = g.d.choice(lengths)
    return random.Random(g.d.seed()).randbytes(n)


def _leaf(g: Gen, av: AnyValue) -> None:
    d = g.d
    kind = d.integer(0, 5)
    if kind == 0:
        av.string_value = draw_text(g, allow_huge=False)
    elif kind == 1:
        av.int_value = draw_int(g)
    elif kind == 2:
        av.double_value = draw_float(g)
    elif kind == 3:
        av.bool_value = d.boolean()
    elif kind == 4:
        av.bytes_value = draw_bytes(g)
    # 5: an AnyValue with no value set


def deep_value(g: Gen, av: AnyValue, depth: int, shape: str) -> None:
    """``av`` nested ``depth`` levels deep (kvlist, array or alternating), built top-down (a copy of a
    deep message would need a parse, which the recursion limit refuses)."""
    g.note(f"{shape} depth {depth}")
    node = av
    for level in range(depth):
        if shape == "kvlist" or (shape == "mixed" and level % 2 == 0):
            node = node.kvlist_value.values.add(key=f"k{level}").value
        else:
            node = node.array_value.values.add()
    _leaf(g, node)


def draw_depth(g: Gen) -> int:
    d = g.d
    return d.weighted(
        [
            (3, lambda: d.integer(2, 20)),
            (5, lambda: d.integer(21, 36)),
            (2, lambda: d.integer(37, 90)),
            (3, lambda: d.integer(91, 110)),
            (2, lambda: d.integer(111, 130)),
        ]
    )


def draw_any_value(g: Gen, av: AnyValue, budget: int = 3) -> None:
    d = g.d
    kind = d.weighted(
        [
            (50, "leaf"),
            (6 if budget else 0, "array"),
            (6 if budget else 0, "kvlist"),
            (g.w_deep(6), "deep"),
            (g.w_big(0.6), "huge"),
        ]
    )
    if kind == "leaf":
        _leaf(g, av)
    elif kind == "huge":
        g.use_big()
        av.string_value = _filled(random.Random(d.seed()), d.choice(((1 << 20) - 1, 1 << 20, 3 << 18)))
        g.note(f"value {len(av.string_value) >> 10} KiB")
    elif kind == "deep":
        g.deep -= 1
        deep_value(g, av, draw_depth(g), d.choice(("kvlist", "kvlist", "array", "mixed")))
    elif kind == "array":
        for _ in range(d.integer(0, 6)):
            draw_any_value(g, av.array_value.values.add(), budget - 1)
        if not av.HasField("array_value"):
            av.array_value.SetInParent()
    else:
        for _ in range(d.integer(0, 6)):
            kv = av.kvlist_value.values.add(key=draw_key(g))
            draw_any_value(g, kv.value, budget - 1)
        if not av.HasField("kvlist_value"):
            av.kvlist_value.SetInParent()


def draw_attributes(g: Gen, attributes: Any, *, few: bool = False) -> None:
    d = g.d
    n = d.weighted(
        [
            (15, 0),
            (60, lambda: d.integer(1, 4)),
            (15, lambda: d.integer(5, 40)),
            (0 if few else g.w_big(1), lambda: d.integer(100, 1000)),
            (0 if few else g.w_big(0.3), lambda: d.integer(2000, 5000)),
        ]
    )
    if n >= 100:
        g.use_big()
        g.note(f"{n} attributes")
        rng = random.Random(d.seed())
        for i in range(n):  # many: cheap and mostly distinct
            attributes.add(key=f"attr.{i}" if rng.random() < 0.9 else rng.choice(KEYS)).value.string_value = str(
                rng.random()
            )
        return
    for _ in range(n):
        kv = attributes.add(key=draw_key(g))
        draw_any_value(g, kv.value)


def draw_time(g: Gen) -> int:
    d, now = g.d, g.now
    kind = d.weighted(
        [
            (70, "recent"),
            (4, "zero"),
            (2, "one"),
            (3, "u64max"),
            (2, "i64max"),
            (2, "2^63"),
            (3, "far-future"),
            (2, "tomorrow"),
            (3, "far-past"),
            (2, "retention-edge"),
            (2, "just-ahead"),
        ]
    )
    if kind == "recent":
        return now - d.integer(0, 3600 * NS)
    g.note(f"time {kind}")
    return {
        "zero": 0,
        "one": 1,
        "u64max": U64,
        "i64max": I64,
        "2^63": 2**63,
        "far-future": min(U64, now + d.integer(1, 300) * YEAR_NS),
        "tomorrow": now + DAY_NS,
        "far-past": max(1, now - 30 * YEAR_NS - d.integer(0, 25 * YEAR_NS)),  # bounds not tied to now
        "retention-edge": now - DAY_NS + d.integer(-5, 5) * NS,
        "just-ahead": now + d.integer(1, 600) * NS,
    }[kind]


# ---- metrics --------------------------------------------------------------------------------------
def _metric_name(g: Gen) -> str:
    d = g.d
    return d.weighted(
        [
            (45, lambda: d.choice(METRIC_NAMES)),
            (15, lambda: d.choice(KPI_METRICS)),
            (25, lambda: draw_text(g, allow_huge=False)),
            (3, ""),
            (2, lambda: _filled(random.Random(d.seed()), d.choice((255, 256, 257, 10_000)))),
        ]
    )


def _number_point(g: Gen, dp: Any, ts: int | None = None) -> None:
    d = g.d
    dp.time_unix_nano = draw_time(g) if ts is None else ts
    if d.boolean(0.3):
        dp.start_time_unix_nano = draw_time(g)
    if d.boolean(0.7):
        dp.as_double = draw_float(g)
    else:
        dp.as_int = draw_int(g)
    if d.boolean(0.05):
        dp.flags = d.choice((1, 2, 3, 2**32 - 1))
    if d.boolean(0.05):
        for _ in range(d.integer(1, 4)):
            ex = dp.exemplars.add(time_unix_nano=draw_time(g), trace_id=draw_bytes(g), span_id=draw_bytes(g))
            ex.as_double = draw_float(g)
            draw_attributes(g, ex.filtered_attributes, few=True)


def _histogram_point(g: Gen, dp: Any) -> None:
    d = g.d
    dp.time_unix_nano = draw_time(g)
    if d.boolean(0.5):
        dp.start_time_unix_nano = draw_time(g)
    n = d.weighted(
        [
            (30, lambda: d.integer(0, 12)),
            (5, 160),
            (g.w_big(4), lambda: d.choice((4095, 4096, 4097))),
            (g.w_big(2), 10_000),
        ]
    )
    if n > 160:
        g.use_big()
    rng = random.Random(d.seed())
    style = d.weighted(
        [
            (50, "sorted"),
            (12, "nan"),
            (8, "inf"),
            (8, "unsorted"),
            (6, "duplicates"),
            (6, "mismatch"),
            (3, "huge-counts"),
        ]
    )
    bounds = sorted(rng.uniform(-1e3, 1e3) for _ in range(n))
    if style == "nan" and bounds:
        for _ in range(d.integer(1, max(1, min(3, n)))):
            bounds[rng.randrange(n)] = math.nan
        g.note("histogram NaN bound")
    elif style == "inf" and bounds:
        bounds[-1] = math.inf
        bounds[0] = -math.inf if d.boolean() else bounds[0]
        g.note("histogram infinite bound")
    elif style == "unsorted":
        rng.shuffle(bounds)
    elif style == "duplicates" and bounds:
        bounds = [bounds[0]] * n
    counts_n = n + 1 if style != "mismatch" else d.choice((0, max(0, n - 1), n + 2, n + 100))
    if n >= 1000:
        g.note(f"histogram {n} buckets")
    dp.explicit_bounds.extend(bounds)
    if style == "huge-counts":
        dp.bucket_counts.extend(rng.choice(UINT64_EDGES) for _ in range(counts_n))
        g.note("histogram uint64 edge counts")
    else:
        dp.bucket_counts.extend(rng.randrange(1000) for _ in range(counts_n))
    dp.count = d.choice(UINT64_EDGES) if d.boolean(0.2) else sum(dp.bucket_counts) % 2**64
    if d.boolean(0.8):
        dp.sum = draw_float(g)
    if d.boolean(0.3):
        dp.min = draw_float(g)
        dp.max = draw_float(g)
    if d.boolean(0.05):
        dp.flags = 1


def _exp_histogram_point(g: Gen, dp: Any) -> None:
    d = g.d
    dp.time_unix_nano = draw_time(g)
    dp.start_time_unix_nano = draw_time(g) if d.boolean(0.5) else 0
    dp.scale = d.choice((-(2**31), -11, -10, -1, 0, 3, 20, 21, 2**31 - 1)) if d.boolean(0.4) else d.integer(-10, 20)
    if dp.scale < -10 or dp.scale > 20:
        g.note(f"exp histogram scale {dp.scale}")
    dp.zero_count = d.choice(UINT64_EDGES) if d.boolean(0.2) else d.integer(0, 100)
    if d.boolean(0.2):
        dp.zero_threshold = draw_float(g)
    rng = random.Random(d.seed())
    for buckets in (dp.positive, dp.negative):
        buckets.offset = d.choice(INT32_EDGES) if d.boolean(0.3) else d.integer(-200, 200)
        n = d.weighted([(40, lambda: d.integer(0, 20)), (4, 160), (g.w_big(3), lambda: d.choice((4096, 4097, 5000)))])
        if n > 160:
            g.use_big()
        buckets.bucket_counts.extend(
            rng.choice(UINT64_EDGES) if rng.random() < 0.05 else rng.randrange(100) for _ in range(n)
        )
    dp.count = d.choice(UINT64_EDGES) if d.boolean(0.3) else d.integer(0, 10_000)
    if d.boolean(0.8):
        dp.sum = draw_float(g)
    if d.boolean(0.3):
        dp.min, dp.max = draw_float(g), draw_float(g)


def _summary_point(g: Gen, dp: Any) -> None:
    d = g.d
    dp.time_unix_nano = draw_time(g)
    dp.count = d.choice(UINT64_EDGES) if d.boolean(0.3) else d.integer(0, 1000)
    dp.sum = draw_float(g)
    for _ in range(d.weighted([(40, lambda: d.integer(0, 5)), (3, lambda: d.integer(50, 500))])):
        dp.quantile_values.add(
            quantile=d.choice((math.nan, -1.0, 0.0, 0.5, 0.99, 1.0, 2.0, math.inf))
            if d.boolean(0.5)
            else d.integer(0, 100) / 100,
            value=draw_float(g),
        )


def _plain_attributes(g: Gen, attributes: Any) -> None:
    """0-3 ordinary attributes (a dense series' points share them, copied by a parse: nothing deep)."""
    d = g.d
    for _ in range(d.integer(0, 3)):
        kv = attributes.add(key=d.choice(KEYS))
        if d.boolean():
            kv.value.string_value = "".join(d.choice(ASCII) for _ in range(d.integer(0, 12)))
        else:
            kv.value.int_value = draw_int(g)


def _dense_series(g: Gen, points: Any, make_attrs: Callable[[Any], None]) -> None:
    """One series: up to 20,000 points 1 us - 2 ms apart, ending now."""
    d = g.d
    n = d.weighted([(3, lambda: d.integer(1000, 5000)), (4, 20_000), (1, lambda: d.integer(5001, 20_000))])
    spacing = d.choice(SPACINGS_NS)
    g.note(f"{n} points {spacing / 1e6:g} ms apart")
    rng = random.Random(d.seed())
    start = g.now - n * spacing
    template = points.add()
    make_attrs(template.attributes)
    template.time_unix_nano = start
    template.as_double = 1.0
    raw = template.SerializeToString()
    del points[-1]
    level = rng.uniform(0, 100)
    step_change = rng.random() < 0.5
    for i in range(n):
        dp = points.add()
        dp.MergeFromString(raw)
        dp.time_unix_nano = start + i * spacing
        dp.as_double = level + rng.gauss(0, 1) + (50 if step_change and i > n * 0.8 else 0)


def metric_item(g: Gen, sm: Any) -> None:
    d = g.d
    metric = sm.metrics.add(name=_metric_name(g))
    if d.boolean(0.5):
        metric.unit = d.choice(("1", "s", "ms", "By", "{request}", "%", "")) if d.boolean(0.8) else draw_text(g)
    if d.boolean(0.2):
        metric.description = draw_text(g)
    data = d.weighted(
        [(30, "gauge"), (25, "sum"), (15, "histogram"), (8, "exponential_histogram"), (6, "summary"), (2, "none")]
    )
    shape = (
        d.weighted([(70, "normal"), (g.w_big(20), "dense"), (g.w_big(10), "cardinality")])
        if data in ("gauge", "sum")
        else "normal"
    )
    if shape != "normal":
        g.use_big()
    if data == "none":
        g.note("metric without data")
        return
    if data == "sum":
        metric.sum.is_monotonic = d.boolean(0.7)
        metric.sum.aggregation_temporality = d.choice((0, 1, 2, 2, 2, 3, 99, -1))
        points = metric.sum.data_points
    elif data == "gauge":
        points = metric.gauge.data_points
    elif data == "histogram":
        metric.histogram.aggregation_temporality = d.choice((0, 1, 2, 2, 5))
        points = metric.histogram.data_points
    elif data == "exponential_histogram":
        metric.exponential_histogram.aggregation_temporality = d.choice((0, 1, 2, 2, 5))
        points = metric.exponential_histogram.data_points
    else:
        points = metric.summary.data_points
    if shape == "dense":
        _dense_series(g, points, lambda attrs: _plain_attributes(g, attrs))
        return
    if shape == "cardinality":
        n = d.choice((500, 1000, 2000, 5000))
        g.note(f"{n} series in one metric")
        rng = random.Random(d.seed())
        ts = g.now - d.integer(0, 60) * NS
        for i in range(n):
            dp = points.add(time_unix_nano=ts, as_double=rng.random())
            dp.attributes.add(key="series").value.string_value = f"s{i}-{rng.getrandbits(32)}"
        return
    fill = {
        "gauge": _number_point,
        "sum": _number_point,
        "histogram": _histogram_point,
        "exponential_histogram": _exp_histogram_point,
        "summary": _summary_point,
    }[data]
    for _ in range(d.weighted([(10, 0), (70, lambda: d.integer(1, 6)), (15, lambda: d.integer(7, 60))])):
        dp = points.add()
        draw_attributes(g, dp.attributes)
        fill(g, dp)


def _resource(g: Gen, resource: Any) -> None:
    d = g.d
    if d.boolean(0.8):
        resource.attributes.add(key="service.name").value.string_value = d.choice(("trainer", "gpu-agent", ""))
        resource.attributes.add(key="host.name").value.string_value = f"node-{d.integer(0, 3)}"
    draw_attributes(g, resource.attributes)
    if d.boolean(0.05):
        resource.dropped_attributes_count = d.choice(UINT32_EDGES)


def _scope(g: Gen, scope: Any) -> None:
    d = g.d
    if d.boolean(0.5):
        scope.name = draw_text(g, allow_huge=False)
        scope.version = draw_text(g, allow_huge=False)
    if d.boolean(0.1):
        draw_attributes(g, scope.attributes, few=True)


def metrics_request(g: Gen) -> bytes:
    d = g.d
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    for _ in range(d.weighted([(80, 1), (15, 2), (4, 3), (1, 0)])):
        rm = request.resource_metrics.add()
        _resource(g, rm.resource)
        if d.boolean(0.1):
            rm.schema_url = draw_text(g)
        for _ in range(d.weighted([(85, 1), (15, 2)])):
            sm = rm.scope_metrics.add()
            _scope(g, sm.scope)
            for _ in range(d.integer(1, 4)):
                metric_item(g, sm)
    return request.SerializeToString()


# ---- traces and logs ------------------------------------------------------------------------------
def traces_request(g: Gen) -> bytes:
    d = g.d
    request = trace_service_pb2.ExportTraceServiceRequest()
    for _ in range(d.weighted([(85, 1), (14, 2), (1, 0)])):
        rs = request.resource_spans.add()
        _resource(g, rs.resource)
        ss = rs.scope_spans.add()
        _scope(g, ss.scope)
        many = d.weighted([(92, 0), (g.w_big(6), lambda: d.integer(200, 1000)), (g.w_big(2), 5000)])
        if many:
            g.use_big()
            g.note(f"{many} spans")
            rng = random.Random(d.seed())
            trace = rng.randbytes(16)
            for i in range(many):
                start = g.now - rng.randrange(3600 * NS)
                ss.spans.add(
                    trace_id=trace if rng.random() < 0.5 else rng.randbytes(16),
                    span_id=rng.randbytes(8),
                    parent_span_id=rng.randbytes(8) if i else b"",
                    name=f"op{rng.randrange(50)}",
                    kind=rng.choice((1, 2, 3)),
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + rng.randrange(10**9),
                ).attributes.add(key="gpu.index").value.int_value = rng.randrange(8)
            continue
        for _ in range(d.integer(1, 8)):
            span = ss.spans.add(
                trace_id=draw_bytes(g, (16, 16, 16, 0, 8, 15, 17, 32)),
                span_id=draw_bytes(g, (8, 8, 8, 0, 4, 9, 16)),
                name=draw_text(g) if d.boolean(0.3) else d.choice(("train.step", "forward", "GET")),
            )
            if d.boolean(0.5):
                span.parent_span_id = draw_bytes(g, (8, 8, 0, 3))
            span.kind = d.choice((0, 1, 2, 3, 4, 5, 99, -1))
            start = span.start_time_unix_nano = draw_time(g)
            span.end_time_unix_nano = d.weighted(
                [
                    (70, lambda start=start: min(U64, start + d.integer(0, 10 * NS))),
                    (10, lambda start=start: max(0, start - d.integer(1, 10 * NS))),
                    (10, lambda: draw_time(g)),
                    (5, 0),
                    (5, U64),
                ]
            )
            if span.end_time_unix_nano < span.start_time_unix_nano:
                g.note("span ends before it starts")
            if d.boolean(0.3):
                span.trace_state = draw_text(g)
            draw_attributes(g, span.attributes)
            events = d.weighted([(80, 0), (15, lambda: d.integer(1, 5)), (g.w_big(5), 1000)])
            if events >= 1000:
                g.use_big()
                g.note("1000 span events")
            for _ in range(events):
                event = span.events.add(time_unix_nano=draw_time(g), name=draw_text(g, allow_huge=False))
                if d.boolean(0.2):
                    draw_attributes(g, event.attributes, few=True)
            for _ in range(d.weighted([(85, 0), (12, lambda: d.integer(1, 4)), (3, 200)])):  # links: small
                span.links.add(trace_id=draw_bytes(g, (16, 0, 5)), span_id=draw_bytes(g, (8, 0, 3)))
            if d.boolean(0.3):
                span.status.code = d.choice((0, 1, 2, 2, 7, -1))
                span.status.message = draw_text(g)
            if d.boolean(0.05):
                span.dropped_attributes_count = d.choice(UINT32_EDGES)
                span.dropped_events_count = d.choice(UINT32_EDGES)
            if d.boolean(0.05):
                span.flags = d.choice(UINT32_EDGES)
    return request.SerializeToString()


def logs_request(g: Gen) -> bytes:
    d = g.d
    request = logs_service_pb2.ExportLogsServiceRequest()
    for _ in range(d.weighted([(85, 1), (14, 2), (1, 0)])):
        rl = request.resource_logs.add()
        _resource(g, rl.resource)
        sl = rl.scope_logs.add()
        _scope(g, sl.scope)
        many = d.weighted([(93, 0), (g.w_big(6), lambda: d.integer(200, 2000)), (g.w_big(1), 20_000)])
        if many:
            g.use_big()
            g.note(f"{many} log records")
            rng = random.Random(d.seed())
            for _ in range(many):
                record = sl.log_records.add(
                    time_unix_nano=g.now - rng.randrange(3600 * NS),
                    event_name=f"event.{rng.randrange(100)}",
                    severity_number=9,
                )
                record.body.string_value = "x" * rng.randrange(100)
            continue
        for _ in range(d.integer(1, 10)):
            record = sl.log_records.add()
            if d.boolean(0.85):
                record.time_unix_nano = draw_time(g)
            if d.boolean(0.4):
                record.observed_time_unix_nano = draw_time(g)
            record.severity_number = d.choice((0, 1, 9, 13, 17, 21, 24, 25, 99, -1))
            if d.boolean(0.5):
                record.severity_text = draw_text(g)
            if d.boolean(0.5):
                record.event_name = draw_text(g) if d.boolean(0.5) else d.choice(("gpu.xid", "job.preempted"))
            if d.boolean(0.9):
                draw_any_value(g, record.body)
            draw_attributes(g, record.attributes)
            if d.boolean(0.3):
                record.trace_id = draw_bytes(g, (16, 0, 7))
                record.span_id = draw_bytes(g, (8, 0, 9))
            if d.boolean(0.05):
                record.flags = d.choice(UINT32_EDGES)
                record.dropped_attributes_count = d.choice(UINT32_EDGES)
    return request.SerializeToString()


GENERATORS: dict[str, Callable[[Gen], bytes]] = {
    "metrics": metrics_request,
    "traces": traces_request,
    "logs": logs_request,
}


def structure_case(d: Draw, now_ns: int | None = None, *, tame: bool = False) -> tuple[str, bytes, list[str]]:
    """A valid request of a drawn signal: (signal, serialized bytes, notable features); ``tame``: no
    big or deep features (a mutation's base)."""
    now = now_ns if now_ns is not None else time.time_ns()
    g = Gen(d, now, big=0, deep=0) if tame else Gen(d, now)
    sig = d.weighted([(50, "metrics"), (25, "traces"), (25, "logs")])
    return sig, GENERATORS[sig](g), g.features


# ---- realistic seeds and byte mutation ------------------------------------------------------------
def realistic_request(sig: str, rng: random.Random, now_ns: int) -> bytes:
    """A plain request like the SDKs and the GPU receiver send (the mutation fuzzer's seeds)."""
    if sig == "metrics":
        request = metrics_service_pb2.ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        for k, v in (("service.name", "factorylens-gpu"), ("host.name", f"gpu-node-{rng.randrange(4)}")):
            rm.resource.attributes.add(key=k).value.string_value = v
        sm = rm.scope_metrics.add()
        sm.scope.name = "factorylens.receivers.gpu"
        for name in rng.sample(METRIC_NAMES, 3):
            metric = sm.metrics.add(name=name, unit="1")
            for gpu in range(rng.randrange(1, 4)):
                dp = metric.gauge.data_points.add(
                    time_unix_nano=now_ns - rng.randrange(60 * NS), as_double=rng.uniform(0, 100)
                )
                dp.attributes.add(key="gpu.index").value.int_value = gpu
                dp.attributes.add(key="hw.type").value.string_value = "gpu"
        counter = sm.metrics.add(name="hw.errors", unit="{error}")
        counter.sum.is_monotonic = True
        counter.sum.aggregation_temporality = 2
        counter.sum.data_points.add(start_time_unix_nano=now_ns - 3600 * NS, time_unix_nano=now_ns, as_int=7)
        hist = sm.metrics.add(name="factorylens.train.step.duration", unit="s")
        hist.histogram.aggregation_temporality = 2
        hist.histogram.data_points.add(
            start_time_unix_nano=now_ns - 3600 * NS,
            time_unix_nano=now_ns,
            count=6,
            sum=3.5,
            explicit_bounds=[0.1, 0.5, 1.0],
            bucket_counts=[1, 2, 2, 1],
        )
        return request.SerializeToString()
    if sig == "traces":
        request = trace_service_pb2.ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = "train-worker"
        ss = rs.scope_spans.add()
        trace, parent = rng.randbytes(16), b""
        for name in ("train.step", "forward", "backward"):
            start = now_ns - rng.randrange(60 * NS)
            span = ss.spans.add(
                trace_id=trace,
                span_id=rng.randbytes(8),
                parent_span_id=parent,
                name=name,
                kind=2,
                start_time_unix_nano=start,
                end_time_unix_nano=start + rng.randrange(10**8),
            )
            span.attributes.add(key="gpu.index").value.int_value = rng.randrange(8)
            parent = span.span_id
        return request.SerializeToString()
    request = logs_service_pb2.ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.add(key="host.name").value.string_value = "gpu-node-1"
    sl = rl.scope_logs.add()
    for _ in range(rng.randrange(1, 4)):
        record = sl.log_records.add(
            time_unix_nano=now_ns - rng.randrange(60 * NS),
            event_name="gpu.xid",
            severity_text="ERROR",
            severity_number=17,
        )
        record.body.string_value = "Xid 79: GPU has fallen off the bus"
        record.attributes.add(key="xid").value.int_value = 79
    return request.SerializeToString()


def _read_varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    value, shift = 0, 0
    while pos < len(buf) and shift < 70:
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7
    return None


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= 2**64 - 1
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@dataclass(frozen=True)
class WireField:
    tag_pos: int  # where the tag starts
    len_pos: int  # where the length varint starts (LEN fields; else the value)
    start: int  # payload start
    end: int  # payload end
    wire_type: int


def wire_fields(buf: bytes, limit: int = 4000) -> list[WireField]:
    """The fields of ``buf`` parsed as protobuf wire format, recursing into length-delimited payloads
    that parse as messages themselves; stops at the first thing that does not parse."""
    found: list[WireField] = []

    def walk(start: int, end: int, depth: int) -> bool:
        pos = start
        while pos < end and len(found) < limit:
            tag = _read_varint(buf, pos)
            if tag is None or tag[0] >> 3 == 0:
                return False
            key, p = tag
            wire_type = key & 7
            if wire_type == 0:
                v = _read_varint(buf, p)
                if v is None or v[1] > end:
                    return False
                found.append(WireField(pos, p, p, v[1], 0))
                pos = v[1]
            elif wire_type in (1, 5):
                size = 8 if wire_type == 1 else 4
                if p + size > end:
                    return False
                found.append(WireField(pos, p, p, p + size, wire_type))
                pos = p + size
            elif wire_type == 2:
                n = _read_varint(buf, p)
                if n is None or n[1] + n[0] > end:
                    return False
                found.append(WireField(pos, p, n[1], n[1] + n[0], 2))
                if depth < 40 and n[0]:
                    mark = len(found)
                    if not walk(n[1], n[1] + n[0], depth + 1):
                        del found[mark:]  # a string or packed numbers, not a message
                pos = n[1] + n[0]
            else:
                return False
        return pos == end

    walk(0, len(buf), 0)
    return found


INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x08)
LENGTH_LIES = ("zero", "minus-one", "plus-one", "huge", "u32", "u64", "overlong", "remaining")


def mutate(d: Draw, data: bytes, other: bytes) -> tuple[bytes, list[str]]:
    """``data`` after 1-4 byte-level mutations (``other``: a second request for splicing)."""
    buf = bytearray(data)
    done: list[str] = []
    for _ in range(d.weighted([(50, 1), (25, 2), (15, 3), (10, 4)])):
        op = d.weighted(
            [
                (14, "bitflip"),
                (8, "byte"),
                (8, "insert"),
                (8, "delete"),
                (8, "truncate"),
                (10, "splice"),
                (6, "duplicate"),
                (22, "length"),
                (8, "wiretype"),
                (6, "fieldnum"),
                (2, "overlong-varint"),
            ]
        )
        if op in ("length", "wiretype", "fieldnum", "overlong-varint"):
            fields = wire_fields(bytes(buf))
            if op == "length":
                fields = [f for f in fields if f.wire_type == 2]
            if not fields:
                op = "bitflip"
        if not buf and op not in ("insert", "splice"):
            op = "insert"
        if op == "bitflip":
            for _ in range(d.integer(1, 8)):
                i = d.integer(0, len(buf) - 1)
                buf[i] ^= 1 << d.integer(0, 7)
        elif op == "byte":
            buf[d.integer(0, len(buf) - 1)] = d.choice(INTERESTING_BYTES)
        elif op == "insert":
            i = d.integer(0, len(buf))
            buf[i:i] = random.Random(d.seed()).randbytes(d.choice((1, 2, 4, 8, 64, 4096)))
        elif op == "delete":
            i = d.integer(0, len(buf) - 1)
            del buf[i : i + d.choice((1, 2, 4, 16, 256))]
        elif op == "truncate":
            del buf[d.integer(0, len(buf) - 1) :]
        elif op == "splice":
            i, j = d.integer(0, len(buf)), d.integer(0, len(other))
            buf = bytearray(bytes(buf[:i]) + other[j:])
        elif op == "duplicate":
            i = d.integer(0, len(buf) - 1)
            chunk = bytes(buf[i : i + d.integer(1, 256)])
            buf[i:i] = chunk * d.choice((1, 2, 16, 1000))
        elif op == "length":
            f = d.choice(fields)
            n = f.end - f.start
            lie = d.choice(LENGTH_LIES)
            new = {
                "zero": _varint(0),
                "minus-one": _varint(max(0, n - 1)),
                "plus-one": _varint(n + 1),
                "huge": _varint(2**31 - 1),
                "u32": _varint(2**32 - 1),
                "u64": _varint(2**64 - 1),
                "overlong": bytes([0xFF] * 9 + [0x01]),
                "remaining": _varint(len(buf) - f.start + d.integer(0, 3)),
            }[lie]
            buf[f.len_pos : f.start] = new
            op = f"length-{lie}"
        elif op == "wiretype":
            f = d.choice(fields)
            tag = _read_varint(bytes(buf), f.tag_pos)
            if tag is not None:
                buf[f.tag_pos : tag[1]] = _varint((tag[0] & ~7) | d.choice((0, 1, 2, 3, 4, 5, 6, 7)))
        elif op == "fieldnum":
            f = d.choice(fields)
            tag = _read_varint(bytes(buf), f.tag_pos)
            if tag is not None:
                number = d.choice((0, 1, 2, 3, 15, 16, 999, 19000, 2**29 - 1))
                buf[f.tag_pos : tag[1]] = _varint((number << 3) | (tag[0] & 7))
        else:  # the same number in more bytes than needed (valid protobuf, rarely seen)
            f = d.choice(fields)
            tag = _read_varint(bytes(buf), f.tag_pos)
            if tag is not None:
                raw = bytearray(_varint(tag[0]))
                raw[-1] |= 0x80
                buf[f.tag_pos : tag[1]] = bytes(raw) + b"\x80" * d.integer(0, 4) + b"\x00"
        done.append(op)
    return bytes(buf), done


@dataclass
class Corpus:
    """Seeds for mutation: realistic requests plus small generated ones, per signal."""

    rng: random.Random
    items: dict[str, list[bytes]] = field(default_factory=lambda: {s: [] for s in SIGNALS})

    def __post_init__(self) -> None:
        now = time.time_ns()
        for sig in SIGNALS:
            self.items[sig].extend(realistic_request(sig, self.rng, now) for _ in range(8))

    def add(self, sig: str, payload: bytes) -> None:
        if len(payload) > CORPUS_MAX_BYTES:
            return
        bucket = self.items[sig]
        if len(bucket) < CORPUS_PER_SIGNAL:
            bucket.append(payload)
        else:
            bucket[8 + self.rng.randrange(CORPUS_PER_SIGNAL - 8)] = payload  # the realistic seeds stay

    def pick(self, d: Draw, sig: str) -> bytes:
        bucket = self.items[sig]
        return bucket[d.integer(0, 7)] if d.boolean(0.4) else d.choice(bucket)


def mutation_case(d: Draw, corpus: Corpus | None, now_ns: int | None = None) -> tuple[str, bytes, list[str]]:
    """A mutated real request. From ``corpus``; without one, from a tame generated request and a
    realistic one, both drawn here (so the case depends on the draws alone, as hypothesis needs)."""
    if corpus is not None:
        origin = d.choice(SIGNALS)
        data = corpus.pick(d, origin)
        other = corpus.pick(d, d.choice(SIGNALS))
    else:
        now = now_ns if now_ns is not None else time.time_ns()
        origin, data, _ = structure_case(d, now, tame=True)
        other = realistic_request(d.choice(SIGNALS), random.Random(d.seed()), now)
    payload, ops = mutate(d, data, other)
    sig = origin if d.boolean(0.8) else d.choice(SIGNALS)
    return sig, payload, [f"from {origin}", *ops]


# ---- known hostile inputs -------------------------------------------------------------------------
@dataclass
class KnownCase:
    name: str
    signal: str
    build: Callable[[int], bytes]
    wait_analysis: bool = False  # poll Health over a few analysis intervals afterwards


def _gauge_with_attribute(
    now: int, fill: Callable[[AnyValue], None], *, name: str = "hw.gpu.utilization", also_normal: bool = True
) -> bytes:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="host.name").value.string_value = "fuzz-node"
    metric = rm.scope_metrics.add().metrics.add(name=name, unit="1")
    dp = metric.gauge.data_points.add(time_unix_nano=now - NS, as_double=1.0)
    fill(dp.attributes.add(key="hostile").value)
    if also_normal:  # the rest of the batch must survive one hostile point
        metric.gauge.data_points.add(time_unix_nano=now - NS, as_double=2.0).attributes.add(
            key="gpu.index"
        ).value.int_value = 0
    return request.SerializeToString()


def _deep(depth: int, shape: str) -> Callable[[AnyValue], None]:
    def fill(av: AnyValue) -> None:
        deep_value(Gen(RandomDraw(depth), 0), av, depth, shape)

    return fill


def _huge_string(av: AnyValue) -> None:
    av.string_value = "x" * (1 << 20)


def _dense(spacing_ns: int, n: int = 20_000, name: str = "factorylens.train.step.duration") -> Callable[[int], bytes]:
    def build(now: int) -> bytes:
        request = metrics_service_pb2.ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        rm.resource.attributes.add(key="service.name").value.string_value = "trainer"
        points = rm.scope_metrics.add().metrics.add(name=name, unit="s").gauge.data_points
        rng = random.Random(n)
        start = now - n * spacing_ns
        for i in range(n):
            points.add(
                time_unix_nano=start + i * spacing_ns,
                as_double=1.0 + rng.gauss(0, 0.01) + (0.5 if i > 0.9 * n else 0.0),
            ).attributes.add(key="job.id").value.string_value = "fuzz"
        return request.SerializeToString()

    return build


def _times(now: int) -> bytes:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    points = request.resource_metrics.add().scope_metrics.add().metrics.add(name="hw.power").gauge.data_points
    for ts in (
        0,
        1,
        now - 50 * YEAR_NS,
        now - DAY_NS - NS,
        now - NS,
        now + DAY_NS,
        now + 100 * YEAR_NS,
        I64,
        2**63,
        U64,
    ):
        points.add(time_unix_nano=ts, as_double=1.0)
    return request.SerializeToString()


def _nan_bounds(now: int) -> bytes:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="rpc.server.duration", unit="s")
    metric.histogram.aggregation_temporality = 2
    for bounds in ([math.nan, 1.0], [0.1, math.nan, 1.0], [math.nan] * 3, [-math.inf, 0.0, math.inf], [1.0, 0.5, 0.1]):
        metric.histogram.data_points.add(
            start_time_unix_nano=now - 60 * NS,
            time_unix_nano=now - NS,
            explicit_bounds=bounds,
            bucket_counts=[1] * (len(bounds) + 1),
            count=len(bounds) + 1,
            sum=1.0,
        )
    exp = request.resource_metrics[0].scope_metrics[0].metrics.add(name="rpc.client.duration", unit="s")
    exp.exponential_histogram.aggregation_temporality = 2
    exp.exponential_histogram.data_points.add(
        time_unix_nano=now - NS, scale=3, count=1, zero_threshold=math.nan, sum=math.nan
    ).positive.bucket_counts.extend([1])
    return request.SerializeToString()


def _many_series(now: int) -> bytes:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="hw.gpu.memory.usage")
    points = metric.gauge.data_points
    for i in range(5000):
        points.add(time_unix_nano=now - NS, as_double=float(i)).attributes.add(
            key="hw.id"
        ).value.string_value = f"GPU-known-{i}"
    return request.SerializeToString()


def _many_attributes(now: int) -> bytes:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    dp = (
        request.resource_metrics.add()
        .scope_metrics.add()
        .metrics.add(name="hw.temperature")
        .gauge.data_points.add(time_unix_nano=now - NS, as_double=50.0)
    )
    for i in range(5000):
        dp.attributes.add(key=f"attr.{i}").value.string_value = str(i)
    return request.SerializeToString()


def _deep_span(now: int) -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    ss = request.resource_spans.add().scope_spans.add()
    for depth in (30, 120):
        span = ss.spans.add(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name="deep",
            kind=2,
            start_time_unix_nano=now - 2 * NS,
            end_time_unix_nano=now - NS,
        )
        _deep(depth, "kvlist")(span.attributes.add(key="hostile").value)
    return request.SerializeToString()


def _deep_log(now: int) -> bytes:
    request = logs_service_pb2.ExportLogsServiceRequest()
    sl = request.resource_logs.add().scope_logs.add()
    for depth, shape in ((120, "array"), (29, "kvlist")):
        record = sl.log_records.add(time_unix_nano=now - NS, event_name="deep")
        _deep(depth, shape)(record.body)
    sl.log_records.add(time_unix_nano=now - NS, event_name="plain").body.string_value = "ok"
    return request.SerializeToString()


def _huge_everywhere(now: int) -> bytes:
    request = logs_service_pb2.ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    _huge_string(rl.resource.attributes.add(key="host.name").value)
    record = rl.scope_logs.add().log_records.add(time_unix_nano=now - NS, event_name="x" * (1 << 20))
    _huge_string(record.body)
    _huge_string(record.attributes.add(key="y" * (1 << 20)).value)
    return request.SerializeToString()


KNOWN_CASES: tuple[KnownCase, ...] = (
    KnownCase(
        "metric attribute: kvlist nested 28 levels",
        "metrics",
        lambda now: _gauge_with_attribute(now, _deep(28, "kvlist")),
    ),
    KnownCase(
        "metric attribute: kvlist nested 30 levels",
        "metrics",
        lambda now: _gauge_with_attribute(now, _deep(30, "kvlist")),
    ),
    KnownCase(
        "metric attribute: kvlist nested 120 levels (past the parser's recursion limit)",
        "metrics",
        lambda now: _gauge_with_attribute(now, _deep(120, "kvlist")),
    ),
    KnownCase(
        "metric attribute: array nested 120 levels",
        "metrics",
        lambda now: _gauge_with_attribute(now, _deep(120, "array")),
    ),
    KnownCase("span attributes: kvlist nested 30 and 120 levels", "traces", _deep_span),
    KnownCase("log bodies: array nested 120 levels, kvlist 29", "logs", _deep_log),
    KnownCase("metric attribute: a 1 MiB value", "metrics", lambda now: _gauge_with_attribute(now, _huge_string)),
    KnownCase("log: 1 MiB resource attribute, event name, body, attribute key", "logs", _huge_everywhere),
    KnownCase("timestamps 0, 1, far past, far future, 2**63-1, 2**64-1", "metrics", _times),
    KnownCase("histograms with NaN/infinite/unsorted bounds, NaN zero_threshold", "metrics", _nan_bounds),
    KnownCase("20,000 points 2 ms apart on one series (KPI)", "metrics", _dense(2_000_000), wait_analysis=True),
    KnownCase(
        "20,000 points 1 us apart on one series",
        "metrics",
        _dense(1_000, name="hw.gpu.utilization"),
        wait_analysis=True,
    ),
    KnownCase("5,000 series in one request", "metrics", _many_series),
    KnownCase("5,000 attributes on one point", "metrics", _many_attributes),
)


# ---- the service under test -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_help() -> str:
    # run outside the checkout: ``-m`` puts the working directory first on sys.path
    out = subprocess.run(
        [sys.executable, "-m", "factorylens", "rca", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tempfile.gettempdir(),
    )
    return out.stdout + out.stderr


def max_memory_args(mb: int | None, help_text: str | None = None) -> list[str]:
    """The ``--max-memory`` arguments for ``mb`` MiB if ``factorylens rca serve`` has the option, else []."""
    if not mb:
        return []
    help_text = serve_help() if help_text is None else help_text
    match = re.search(r"(--max-memory(?:-mb)?)(?:[ =]([A-Za-z_]+))?", help_text)
    if not match:
        return []
    option, metavar = match.group(1), (match.group(2) or "").upper()
    if option.endswith("-mb") or "MB" in metavar or "MIB" in metavar:
        return [option, str(mb)]
    if "GB" in metavar or "GIB" in metavar:
        return [option, f"{mb / 1024:g}"]
    if "BYTE" in metavar:
        return [option, str(mb << 20)]
    if "SIZE" in metavar:
        return [option, f"{mb}M"]
    return [option, str(mb)]


def proc_status_kib(pid: int, field_name: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class Reply:
    outcome: str  # ok | partial | a gRPC status code name | hang | crash
    detail: str = ""
    seconds: float = 0.0


class Service:
    """``factorylens rca serve`` in a subprocess on a free port, with a memory watchdog."""

    def __init__(
        self,
        workdir: Path,
        *,
        analysis_interval_s: float,
        fsync: str,
        extra_args: Sequence[str] = (),
        rss_limit_mb: int = 4096,
    ) -> None:
        self.workdir = workdir
        self.analysis_interval_s = analysis_interval_s
        self.fsync = fsync
        self.extra_args = list(extra_args)
        self.rss_limit_kib = rss_limit_mb << 10
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None
        self.address = ""
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        self.starts = 0
        self.peak_rss_kib = 0
        self.killed_for_memory = False
        self._stop_watch = threading.Event()
        self._watch: threading.Thread | None = None
        self._calls: dict[str, Any] = {}
        self._health: Any = None

    # lifecycle
    def start(self, *, fresh: bool = True, timeout_s: float = START_TIMEOUT_S) -> bool:
        """Start (on a new data dir if ``fresh``); False if it died or did not answer Health in time."""
        self.stop()
        self.starts += 1
        if fresh or self.data_dir is None:
            self.data_dir = self.workdir / f"data-{self.starts}"
        self.log_path = self.workdir / f"service-{self.starts}.log"
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        command = [
            sys.executable,
            "-m",
            "factorylens",
            "rca",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--metrics-listen",
            "off",
            "--data-dir",
            str(self.data_dir),
            "--fsync",
            self.fsync,
            "--analysis-interval",
            f"{self.analysis_interval_s:g}",
            "--max-message-mb",
            str(MAX_MESSAGE_MB),
            *self.extra_args,
        ]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir
            )  # not the checkout: ``-m`` imports from the cwd first
        self.killed_for_memory = False
        self._stop_watch = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, args=(self.proc, self._stop_watch), daemon=True)
        self._watch.start()
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.max_send_message_length", (MAX_MESSAGE_MB + 8) << 20),
                ("grpc.max_receive_message_length", 64 << 20),
            ],
        )
        self._calls = {
            sig: self.channel.unary_unary(METHODS[sig][0], request_serializer=None, response_deserializer=None)
            for sig in SIGNALS
        }
        self._health = rca_pb2_grpc.RcaServiceStub(self.channel).Health
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            try:
                self._health(rca_pb2.HealthRequest(), timeout=1.0)
                return True
            except grpc.RpcError:
                time.sleep(0.05)
        return False

    def _watchdog(self, proc: subprocess.Popen, stop: threading.Event) -> None:
        while not stop.wait(WATCHDOG_PERIOD_S) and proc.poll() is None:
            rss = proc_status_kib(proc.pid, "VmRSS")
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            if rss > self.rss_limit_kib:
                self.killed_for_memory = True
                self.peak_rss_kib = max(self.peak_rss_kib, proc_status_kib(proc.pid, "VmHWM"))
                proc.kill()
                return

    def note_peak(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.peak_rss_kib = max(self.peak_rss_kib, proc_status_kib(self.proc.pid, "VmHWM"))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the service so far (all its threads)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:  # type: ignore[union-attr]
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, AttributeError, IndexError, ValueError):
            return 0.0

    def death(self) -> str:
        """Why the process is gone, from its exit status and log."""
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        if code is None:
            return "alive"
        if self.killed_for_memory:
            why = f"out of memory: RSS over {self.rss_limit_kib >> 10} MiB, killed by the harness"
        elif code < 0:
            why = f"killed by {signals.Signals(-code).name}" + (" (the kernel's OOM killer?)" if code == -9 else "")
        else:
            why = f"exited with status {code}"
        tail = self.log_tail(3)
        return why + (f"; log: {tail}" if tail else "")

    def log_tail(self, lines: int) -> str:
        try:
            text = self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""
        keep = [line.strip()[:300] for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(keep)

    def stop(self) -> None:
        self._stop_watch.set()
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is not None:
            self.note_peak()
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    # calls
    def export(self, sig: str, payload: bytes, timeout_s: float = EXPORT_TIMEOUT_S) -> Reply:
        began = time.monotonic()
        try:
            raw = self._calls[sig](payload, timeout=timeout_s)
        except grpc.RpcError as exc:
            spent = time.monotonic() - began
            code = exc.code()
            if not self.alive():
                return Reply("crash", self.death(), spent)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Reply("hang", f"Export did not answer in {timeout_s:g}s", spent)
            if code == grpc.StatusCode.UNAVAILABLE and not any(
                key in RETRY_TRAILERS for key, _ in (exc.trailing_metadata() or ())
            ):
                return Reply(DROPPED, (exc.details() or "")[:300], spent)  # not backpressure: the transport broke
            return Reply(code.name, (exc.details() or "")[:300], spent)
        spent = time.monotonic() - began
        response = METHODS[sig][2].FromString(raw)
        rejected = getattr(response.partial_success, METHODS[sig][3])
        if rejected or response.partial_success.error_message:
            return Reply("partial", f"{rejected} rejected: {response.partial_success.error_message[:200]}", spent)
        return Reply("ok", "", spent)

    def health(self, timeout_s: float = HEALTH_TIMEOUT_S) -> Reply:
        began = time.monotonic()
        try:
            self._health(rca_pb2.HealthRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            if not self.alive():
                return Reply("crash", self.death(), time.monotonic() - began)
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Reply("hang", f"Health did not answer in {timeout_s:g}s", time.monotonic() - began)
            return Reply(exc.code().name, exc.details() or "", time.monotonic() - began)
        return Reply("ok", "", time.monotonic() - began)


# ---- the campaign -----------------------------------------------------------------------------------
@dataclass
class Finding:
    index: int
    kind: str  # structure | mutation | known
    signal: str
    outcome: str  # crash | hang | refused | error
    detail: str
    size: int
    features: list[str]
    recent: list[str]  # the features of the cases just before (a hang may be caused by an earlier one)
    path: str = ""


@dataclass
class Report:
    cases: int = 0
    seconds: float = 0.0
    max_rss_mb: float = 0.0
    outcomes: collections.Counter = field(default_factory=collections.Counter)  # (kind, signal, outcome)
    findings: list[Finding] = field(default_factory=list)
    restarts: int = 0
    generate_s: float = 0.0
    max_export_s: float = 0.0

    def count(self, outcome: str) -> int:
        return sum(1 for f in self.findings if f.outcome == outcome)

    @property
    def crashes(self) -> int:
        return self.count("crash")

    @property
    def hangs(self) -> int:
        return self.count("hang")

    @property
    def refused(self) -> int:
        return self.count("refused")

    @property
    def errors(self) -> int:
        return self.count("error")

    def summary(self) -> dict[str, Any]:
        return {
            "bench": "fuzz",
            "cases": self.cases,
            "crashes": self.crashes,
            "hangs": self.hangs,
            "max_rss_mb": round(self.max_rss_mb, 1),
        }


SERVER_ERRORS = {"UNKNOWN", "INTERNAL", "DATA_LOSS", "UNIMPLEMENTED", "UNAVAILABLE without RetryInfo"}


class Campaign:
    """Cases against one service subprocess; crashes and hangs recorded, the service restarted."""

    def __init__(
        self,
        service: Service,
        *,
        seed: int = 0,
        cases: int = 10_000,
        max_seconds: float = 600.0,
        known: bool = True,
        mutation_share: float = 0.4,
        findings_dir: Path | None = None,
        probe_restarts: int = 3,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.service = service
        self.seed = seed
        self.max_cases = cases
        self.max_seconds = max_seconds
        self.known = known
        self.mutation_share = mutation_share
        self.findings_dir = findings_dir
        self.probe_restarts = probe_restarts
        self.progress = progress
        self.report = Report()
        self.corpus = Corpus(random.Random(f"corpus:{seed}"))
        self._recent: collections.deque[str] = collections.deque(maxlen=3)
        self._began = 0.0
        self._last_progress = 0.0

    # one case
    def done(self) -> bool:
        return self.report.cases >= self.max_cases or time.monotonic() - self._began >= self.max_seconds

    def run(self, engine: str = "random") -> Report:
        self._began = self._last_progress = time.monotonic()
        if not self.service.alive() and not self.service.start():
            raise RuntimeError(f"the service did not start: {self.service.death()}")
        try:
            if self.known:
                for case in KNOWN_CASES:
                    if self.done():
                        break
                    self._known(case)
            if engine == "hypothesis":
                self._run_hypothesis()
            else:
                index = 0
                while not self.done():
                    self.one(RandomDraw(f"{self.seed}:{index}"))
                    index += 1
        finally:
            self.service.note_peak()
            self.report.seconds = time.monotonic() - self._began
            self.report.max_rss_mb = self.service.peak_rss_kib / 1024
        return self.report

    def _run_hypothesis(self) -> None:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hypothesis_seed
        from hypothesis import strategies as st
        from hypothesis.errors import Flaky

        class Done(Exception):
            pass

        now = time.time_ns()  # one clock for the run: a case must depend on its draws alone

        @hypothesis_seed(self.seed)
        @settings(
            max_examples=max(1, self.max_cases - self.report.cases),
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def one(data: Any) -> None:
            if self.done():
                raise Done  # hypothesis has no early stop; an exception ends the run
            self.one(HypothesisDraw(data), now_ns=now)

        try:
            one()
        except Done:
            pass
        except Flaky:  # how hypothesis reports the stop when a case had drawn further before
            if not self.done():
                raise

    def one(self, d: Draw, now_ns: int | None = None) -> None:
        """One drawn case; with ``now_ns`` (the hypothesis engine) it depends on the draws alone."""
        began = time.perf_counter()
        if d.boolean(self.mutation_share):
            kind = "mutation"
            sig, payload, features = mutation_case(d, None if now_ns else self.corpus, now_ns)
        else:
            kind = "structure"
            sig, payload, features = structure_case(d, now_ns)
            if now_ns is None:
                self.corpus.add(sig, payload)
        self.report.generate_s += time.perf_counter() - began
        self.execute(kind, sig, payload, features)

    def _known(self, case: KnownCase) -> None:
        payload = case.build(time.time_ns())
        self.execute("known", case.signal, payload, [case.name], wait_analysis=case.wait_analysis)

    def execute(
        self, kind: str, sig: str, payload: bytes, features: list[str], *, wait_analysis: bool = False
    ) -> Reply:
        service, report = self.service, self.report
        index = report.cases
        report.cases += 1
        reply = service.export(sig, payload)
        report.max_export_s = max(report.max_export_s, reply.seconds)
        if reply.outcome not in ("crash", "hang"):
            after = self._health_after(wait_analysis)
            if after.outcome != "ok":  # Health must answer, and answer OK: else unresponsive (a hang)
                outcome = after.outcome if after.outcome in ("crash", "hang") else "hang"
                what = (
                    after.detail
                    if after.outcome in ("crash", "hang")
                    else f"Health failed: {after.outcome} {after.detail}"
                )
                reply = Reply(
                    outcome,
                    f"Export answered {reply.outcome} {reply.detail[:150]}".rstrip()
                    + f" in {reply.seconds:.1f}s; then {what}",
                    reply.seconds,
                )
            elif not service.alive():
                reply = Reply("crash", service.death(), reply.seconds)
        outcome = reply.outcome
        report.outcomes[(kind, sig, outcome)] += 1
        finding = None
        if outcome in ("crash", "hang"):
            finding = outcome
        elif kind != "mutation" and outcome == "INVALID_ARGUMENT":
            finding = "refused"  # a valid message refused whole
        elif outcome in SERVER_ERRORS:
            finding = "error"
        if finding:
            self._record(
                Finding(
                    index, kind, sig, finding, f"{outcome}: {reply.detail}", len(payload), features, list(self._recent)
                ),
                payload,
            )
        if outcome == "crash":
            self._restart_after_crash()
        elif outcome == "hang":
            service.stop()
            report.restarts += 1
            if not service.start(fresh=True):
                raise RuntimeError(f"the service does not start any more: {service.death()}")
        self._recent.append(f"#{index} {kind} {sig}: {', '.join(features[:6]) or '-'}")
        now = time.monotonic()
        if self.progress and now - self._last_progress >= PROGRESS_EVERY_S:
            self._last_progress = now
            self.progress(self.progress_line())
        return reply

    def _health_after(self, wait_analysis: bool) -> Reply:
        reply = self.service.health()
        if not wait_analysis or reply.outcome != "ok":
            return reply
        # let the analysis take the new points in: Health every 0.1 s over three analysis intervals
        deadline = time.monotonic() + 3 * self.service.analysis_interval_s + 0.5
        while time.monotonic() < deadline:
            time.sleep(0.1)
            reply = self.service.health()
            if reply.outcome != "ok":
                return reply
        probe = self.service.export("metrics", realistic_request("metrics", random.Random(0), time.time_ns()))
        if probe.outcome in ("crash", "hang"):
            return probe
        # a stuck analysis need not block ingest or Health: it shows as a service busy with nothing sent
        busy = []
        for _ in range(IDLE_WINDOWS):
            before, began = self.service.cpu_seconds(), time.monotonic()
            time.sleep(1.0)
            busy.append((self.service.cpu_seconds() - before) / (time.monotonic() - began))
            if busy[-1] < IDLE_BUSY_SHARE:
                return reply
        return Reply(
            "hang",
            "busy while idle (analysis stuck?): "
            + ", ".join(f"{b:.0%}" for b in busy)
            + f" of a core in {IDLE_WINDOWS} 1 s windows with nothing sent",
        )

    def _restart_after_crash(self) -> None:
        service, report = self.service, self.report
        report.restarts += 1
        if self.probe_restarts > 0:
            self.probe_restarts -= 1
            if service.start(fresh=False, timeout_s=PROBE_START_TIMEOUT_S) and service.health().outcome == "ok":
                return
            why = service.death() if not service.alive() else f"no Health within {PROBE_START_TIMEOUT_S:g}s"
            last = report.findings[-1]
            last.detail += f" || restart on the same data dir failed (WAL replay of the case?): {why}"
            self._save(last)
            service.stop()
        if not service.start(fresh=True):
            raise RuntimeError(f"the service does not start any more: {service.death()}")

    def _record(self, finding: Finding, payload: bytes) -> None:
        if self.findings_dir is not None:
            self.findings_dir.mkdir(parents=True, exist_ok=True)
            path = self.findings_dir / f"{finding.outcome}-{finding.index:06d}-{finding.kind}.{finding.signal}.bin"
            path.write_bytes(payload)
            finding.path = str(path)
            self._save(finding)
        self.report.findings.append(finding)
        if self.progress:
            self.progress(
                f"FINDING #{finding.index} {finding.outcome} ({finding.kind} {finding.signal}, "
                f"{finding.size:,} bytes): {finding.detail[:300]}; features: {', '.join(finding.features)}"
            )

    @staticmethod
    def _save(finding: Finding) -> None:
        if finding.path:
            Path(finding.path).with_suffix(".json").write_text(json.dumps(finding.__dict__, indent=1, default=str))

    def progress_line(self) -> str:
        r = self.report
        elapsed = max(1e-9, time.monotonic() - self._began)
        self.service.note_peak()
        return (
            f"{r.cases:,} cases in {elapsed:.0f}s ({r.cases / elapsed:.1f}/s): {r.crashes} crashes, "
            f"{r.hangs} hangs, {r.refused} valid refused, {r.errors} server errors; "
            f"service peak RSS {self.service.peak_rss_kib / 1024:.0f} MiB"
        )


# ---- main ---------------------------------------------------------------------------------------------
def print_table(report: Report, out: Any = sys.stdout) -> None:
    outcomes = sorted({o for (_, _, o) in report.outcomes})
    rows = sorted({(k, s) for (k, s, _) in report.outcomes})
    width = max([len(o) for o in outcomes] + [6])
    print(f"{'case':<20}" + "".join(f"{o:>{width + 1}}" for o in outcomes), file=out)
    for kind, sig in rows:
        print(
            f"{kind + ' ' + sig:<20}" + "".join(f"{report.outcomes[(kind, sig, o)]:>{width + 1}}" for o in outcomes),
            file=out,
        )
    rate = report.cases / max(report.seconds, 1e-9)
    summary = [
        ("cases", f"{report.cases:,}"),
        ("seconds", f"{report.seconds:.1f}"),
        ("cases/s", f"{rate:.1f}"),
        ("generation ms/case", f"{1000 * report.generate_s / max(1, report.cases):.2f}"),
        ("slowest Export s", f"{report.max_export_s:.2f}"),
        ("crashes", report.crashes),
        ("hangs", report.hangs),
        ("valid requests refused whole (INVALID_ARGUMENT)", report.refused),
        ("server errors (UNKNOWN/INTERNAL/connection dropped)", report.errors),
        ("service restarts", report.restarts),
        ("service peak RSS MiB", f"{report.max_rss_mb:.0f}"),
    ]
    print(file=out)
    for name, value in summary:
        print(f"{name:<50} {value:>10}", file=out)
    if report.findings:
        print("\nfindings:", file=out)
        for f in report.findings:
            print(
                f"  #{f.index} {f.outcome.upper()} {f.kind} {f.signal} ({f.size:,} bytes): {f.detail[:400]}", file=out
            )
            print(f"      features: {', '.join(f.features) or '-'}", file=out)
            if f.outcome == "hang" and f.recent:
                print(f"      cases just before: {' || '.join(f.recent)}", file=out)
            if f.path:
                print(f"      saved: {f.path}", file=out)


def replay(service: Service, paths: Iterable[str]) -> Report:
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.bin")) if p.is_dir() else [p])
    campaign = Campaign(
        service,
        known=False,
        cases=len(files),
        max_seconds=math.inf,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    campaign._began = campaign._last_progress = time.monotonic()
    if not service.start():
        raise RuntimeError(f"the service did not start: {service.death()}")
    for path in files:
        sig = next((s for s in SIGNALS if path.name.endswith(f".{s}.bin")), "metrics")
        kind = "mutation" if "-mutation." in path.name else "replay"
        meta = path.with_suffix(".json")
        features = json.loads(meta.read_text()).get("features", []) if meta.exists() else []
        print(f"replaying {path.name} ({sig})", file=sys.stderr)
        campaign.execute(kind, sig, path.read_bytes(), features, wait_analysis=True)
    service.note_peak()
    campaign.report.seconds = time.monotonic() - campaign._began
    campaign.report.max_rss_mb = service.peak_rss_kib / 1024
    return campaign.report


def report_findings(report: Report | None) -> bool:
    return report is None or bool(report.findings)  # None: it failed part way, keep everything


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--engine",
        choices=("random", "hypothesis"),
        default="random",
        help="where the generators' choices come from (default random: faster)",
    )
    parser.add_argument("--mutation-share", type=float, default=0.4, help="share of byte-mutation cases")
    parser.add_argument("--no-known", action="store_true", help="skip the known hostile inputs")
    parser.add_argument(
        "--max-memory-mb",
        type=int,
        default=2048,
        help="passed to the service as --max-memory when it has the option (0: never)",
    )
    parser.add_argument(
        "--rss-limit-mb",
        type=int,
        default=0,
        help="kill the service above this RSS, a crash (default: 2 x --max-memory-mb, at least 4096)",
    )
    parser.add_argument("--analysis-interval-s", type=float, default=0.5)
    parser.add_argument("--fsync", choices=("always", "interval", "never"), default="always")
    parser.add_argument(
        "--probe-restarts",
        type=int,
        default=3,
        help="after this many crashes, restart on a fresh data dir without trying the old one",
    )
    parser.add_argument(
        "--findings",
        type=Path,
        help="save crash/hang/refused requests here (default: a new temporary directory, kept when there are findings)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="also fail on valid requests refused whole and on server errors"
    )
    parser.add_argument("--keep", action="store_true", help="keep the service's data dirs and logs")
    parser.add_argument("--replay", nargs="+", metavar="PATH", help="resend saved findings (.bin files or dirs)")
    args = parser.parse_args(argv)
    rss_limit = args.rss_limit_mb or max(4096, 2 * args.max_memory_mb)

    memory_args = max_memory_args(args.max_memory_mb)
    print(
        f"service: factorylens rca serve --analysis-interval {args.analysis_interval_s:g} --fsync {args.fsync} "
        f"{' '.join(memory_args) or '(no --max-memory option: not passed)'}; harness kills it above "
        f"{rss_limit} MiB RSS",
        file=sys.stderr,
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="factorylens-fuzz-"))
    findings_dir = args.findings or workdir / "findings"
    service = Service(
        workdir,
        analysis_interval_s=args.analysis_interval_s,
        fsync=args.fsync,
        extra_args=memory_args,
        rss_limit_mb=rss_limit,
    )
    try:
        if args.replay:
            report = replay(service, args.replay)
        else:
            campaign = Campaign(
                service,
                seed=args.seed,
                cases=args.cases,
                max_seconds=args.max_seconds,
                known=not args.no_known,
                mutation_share=args.mutation_share,
                findings_dir=findings_dir,
                probe_restarts=args.probe_restarts,
                progress=lambda line: print(line, file=sys.stderr, flush=True),
            )
            report = campaign.run(args.engine)
    finally:
        service.stop()
        if not args.keep:
            import shutil

            for data in workdir.glob("data-*"):  # big; the logs (and findings) stay when there are findings
                shutil.rmtree(data, ignore_errors=True)
            if not report_findings(locals().get("report")):
                shutil.rmtree(workdir, ignore_errors=True)
        if workdir.exists():
            print(f"service logs kept in {workdir}; findings in {findings_dir}", file=sys.stderr)
    what = f"replay of {report.cases} saved requests" if args.replay else f"engine {args.engine}, seed {args.seed}"
    print(
        f"{what}, analysis every {args.analysis_interval_s:g}s, fsync={args.fsync}, "
        f"{' '.join(memory_args) or 'no --max-memory'}"
    )
    print_table(report)
    print(json.dumps(report.summary()))
    failed = report.crashes or report.hangs or (args.strict and (report.refused or report.errors))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
