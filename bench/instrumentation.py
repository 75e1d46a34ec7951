"""Training instrumentation overhead: the same loop with and without ``factorylens.instrumentation``.

Method. A step is six phases (data, h2d, forward, backward, optimizer, collective) whose work sums to
the step size (1, 10 and 100 ms). The work is a busy-wait on ``time.perf_counter_ns`` until the phase's
deadline, so every phase takes exactly its share of wall time and the loop holds the GIL the whole
time, as a CPU-bound training loop does. The instrumented loop is the three-line integration through
the module-level API (``fl.step``, ``fl.data``, ``fl.forward``, ...) with real SDK providers
(``MeterProvider`` with an ``InMemoryMetricReader``, ``TracerProvider`` exporting to an
``InMemorySpanExporter``) and the default sampling (a span tree every 100 steps, plus slow steps), so
the background telemetry thread really runs and competes with the loop for the GIL; that cost is part
of the overhead. The uninstrumented loop runs the same work in the same structure without the calls.

Each instrumented block is ``fl.init()`` → the timed loop → ``fl.shutdown()``; the shutdown (which
turns the steps not drained yet into telemetry, on the calling thread) is timed with the loop, so every
step's telemetry is paid for inside the block (its one-off part, a metrics collection, is ~0.3 ms a
block: ≤ 0.01% at the default step counts, more with ``--quick``). For each step size, instrumented and
uninstrumented blocks alternate (the order flips every repetition) and each variant's step time is the
median of its block means; ratio = instrumented / uninstrumented − 1. The CPU the telemetry takes off the training
thread (process CPU − training-thread CPU over the loop, plus the shutdown's) is reported per step.

Per phase: a tight loop of steps whose phases do no work, in blocks short enough (well under the
1 s drain interval) that the telemetry thread never runs inside one: the difference per step between
the instrumented and the bare loop is the training thread's own cost (the step's included), divided by
the six phases = ``overhead_us_per_phase``. The same loop before ``fl.init()`` (every call a no-op) is
timed too.

Serving (``factorylens.instrumentation.serving``): a tight loop of requests with no work, through the
module API with a real ``MeterProvider``: ``fls.request()`` → ``scheduled()`` → ``first_token()`` →
``finish()`` (a non-streaming server's marks), and the same with ``token()`` per output token
(``SERVING_TOKENS`` of them: a streaming server). Bare (the same loops without the calls), no-op
(before ``fls.init()``) and instrumented blocks rotate; blocks stay under the queue bound and the
drain interval, so the server thread's own cost is what the difference measures. Its fraction of a
1 s request is that cost / 1 s (a request's work does not change it: the marks are clock reads and
attribute stores, the end one queue append). The background thread's recording of the queued
requests (``drain()``: the SDK histograms and counters) is timed after each block, per request.

Usage: python bench/instrumentation.py [--blocks 5] [--quick] [--case all|training|serving]
Last line: {"bench": "instrumentation", "overhead_us_per_phase": x, "overhead_ratio_10ms": x,
            "overhead_ratio_1ms": x, "overhead_ratio_100ms": x, "overhead_us_per_step": x,
            "noop_us_per_phase": x, "telemetry_cpu_us_per_step_{1,10,100}ms": x,
            "serving_overhead_ns_per_request": x, "serving_overhead_ns_per_token": x,
            "serving_overhead_ratio_1s": x, "serving_noop_ns_per_request": x,
            "serving_telemetry_cpu_us_per_request": x, "blocks": n, "quick": bool}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import factorylens.instrumentation as fl
import factorylens.instrumentation.serving as fls

perf_counter_ns = time.perf_counter_ns

# each phase's share of the step's work (sums to 1)
SHARES = {"data": 0.05, "h2d": 0.05, "forward": 0.30, "backward": 0.45, "optimizer": 0.10, "collective": 0.05}
PHASES = len(SHARES)
STEP_SIZES_MS = (1, 10, 100)
STEPS_PER_BLOCK = {1: 2000, 10: 300, 100: 30}
QUICK_DIVISOR = 10
EMPTY_STEPS_PER_BLOCK = 2000  # well under the 1 s drain interval and max_pending_steps (no drops)
EMPTY_BLOCKS_PER_BLOCK = 6  # the empty-phase measurement runs 6 × --blocks repetitions
SAMPLES = 32
GPU_ID = "GPU-00000000-0000-0000-0000-000000000000"  # skips NVML discovery at each fl.init()
TARGET_US_PER_PHASE = 20.0
TARGET_RATIO_10MS = 0.01
SERVING_REQUESTS_PER_BLOCK = 5000  # well under the queue bound (100,000): nothing is dropped
SERVING_BLOCKS_PER_BLOCK = 6
SERVING_TOKENS = 256  # output tokens of a streamed request, one token() each
SERVING_REQUEST_S = 1.0  # the realistic request the per-request cost is a fraction of
TARGET_SERVING_RATIO = 0.001  # 0.1% of a 1 s request, streamed

Loop = Callable[[int, tuple[int, ...]], None]


def busy(ns: int) -> None:
    """Hold the CPU (and the GIL) for ``ns`` nanoseconds of wall time."""
    deadline = perf_counter_ns() + ns
    while perf_counter_ns() < deadline:
        pass


def bare_loop(steps: int, work: tuple[int, ...]) -> None:
    data, h2d, forward, backward, optimizer, collective = work
    for _ in range(steps):
        busy(data)
        busy(h2d)
        busy(forward)
        busy(backward)
        busy(optimizer)
        busy(collective)


def instrumented_loop(steps: int, work: tuple[int, ...]) -> None:
    data, h2d, forward, backward, optimizer, collective = work
    for _ in range(steps):
        with fl.step(samples=SAMPLES):
            with fl.data():
                busy(data)
            with fl.h2d():
                busy(h2d)
            with fl.forward():
                busy(forward)
            with fl.backward():
                busy(backward)
            with fl.optimizer():
                busy(optimizer)
            with fl.collective():
                busy(collective)


def phase_work(step_ms: float) -> tuple[int, ...]:
    """Nanoseconds of work per phase, summing exactly to the step size."""
    total = round(step_ms * 1e6)
    work = {name: round(total * share) for name, share in SHARES.items()}
    work["backward"] += total - sum(work.values())
    return tuple(work.values())


@dataclass
class Block:
    step_ns: float  # wall time per step (shutdown included for instrumented blocks)
    telemetry_ns: float  # CPU per step off the training thread's loop (0 for the bare loop)


def timed_loop(loop: Loop, steps: int, work: tuple[int, ...]) -> Block:
    """Wall time per step of ``loop``, with nothing around it."""
    start = perf_counter_ns()
    loop(steps, work)
    return Block((perf_counter_ns() - start) / steps, 0.0)


@contextmanager
def instrumented() -> Iterator[None]:
    """``fl.init()`` with fresh SDK providers; ``fl.shutdown()`` (a no-op if already done) and theirs after."""
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    fl.init(
        job_id="bench",
        span_every_steps=100,
        gpu_ids=(GPU_ID,),
        meter_provider=meter_provider,
        tracer_provider=tracer_provider,
        otlp="off",
    )
    try:
        yield
    finally:
        fl.shutdown()
        meter_provider.shutdown()
        tracer_provider.shutdown()


def timed_instrumented(steps: int, work: tuple[int, ...]) -> Block:
    """``fl.init()`` → the loop → ``fl.shutdown()``, the last two timed."""
    with instrumented():
        start, cpu, main_cpu = perf_counter_ns(), time.process_time_ns(), time.thread_time_ns()
        instrumented_loop(steps, work)
        loop_main_cpu = time.thread_time_ns() - main_cpu
        fl.shutdown()
        end = perf_counter_ns()
        telemetry_cpu = time.process_time_ns() - cpu - loop_main_cpu  # other threads + the shutdown's drain
    return Block((end - start) / steps, telemetry_cpu / steps)


@dataclass
class Result:
    bare_ns: float
    instrumented_ns: float
    telemetry_ns: float

    @property
    def ratio(self) -> float:
        return self.instrumented_ns / self.bare_ns - 1.0


def interleaved(steps: int, work: tuple[int, ...], blocks: int) -> Result:
    """Alternate bare and instrumented blocks (order flipped each repetition); medians of block means."""
    bare: list[Block] = []
    with_fl: list[Block] = []
    for rep in range(blocks):
        if rep % 2:
            with_fl.append(timed_instrumented(steps, work))
        bare.append(timed_loop(bare_loop, steps, work))
        if not rep % 2:
            with_fl.append(timed_instrumented(steps, work))
    return Result(
        statistics.median(b.step_ns for b in bare),
        statistics.median(b.step_ns for b in with_fl),
        statistics.median(b.telemetry_ns for b in with_fl),
    )


@dataclass
class PerPhase:
    bare_ns: float  # per step
    noop_ns: float  # per step, the API before fl.init()
    instrumented_ns: float  # per step, the training thread's loop only

    @property
    def step_overhead_ns(self) -> float:
        return self.instrumented_ns - self.bare_ns

    @property
    def phase_overhead_ns(self) -> float:
        return self.step_overhead_ns / PHASES


def per_phase(steps: int, blocks: int) -> PerPhase:
    """Empty phases: bare, no-op (before init) and instrumented loops, rotated; medians of block means."""
    empty = (0,) * PHASES
    samples: dict[str, list[float]] = {"bare": [], "noop": [], "instrumented": []}

    def timed_instrumented_empty() -> float:
        with instrumented():  # the telemetry thread first drains 1 s after init: never inside the block
            return timed_loop(instrumented_loop, steps, empty).step_ns

    variants: list[tuple[str, Callable[[], float]]] = [
        ("bare", lambda: timed_loop(bare_loop, steps, empty).step_ns),
        ("noop", lambda: timed_loop(instrumented_loop, steps, empty).step_ns),
        ("instrumented", timed_instrumented_empty),
    ]
    for _, run in variants:  # warm-up
        run()
    for rep in range(blocks):
        first = rep % len(variants)
        for name, run in variants[first:] + variants[:first]:
            samples[name].append(run())
    return PerPhase(*(statistics.median(samples[name]) for name in ("bare", "noop", "instrumented")))


# ---- serving ---------------------------------------------------------------------------------------
def bare_requests(requests: int, tokens: int) -> None:
    for _ in range(requests):
        for _ in range(tokens):
            pass


def marked_requests(requests: int, tokens: int) -> None:
    """A non-streaming server's marks (``tokens`` is 0) or a streaming server's (a token() per token)."""
    for _ in range(requests):
        with fls.request(prompt_tokens=512) as r:
            r.scheduled()
            if tokens:
                for _ in range(tokens):
                    r.token()
            else:
                r.first_token()
                r.finish(output_tokens=128)


@dataclass
class Serving:
    bare_ns: dict[int, float]  # per request, by output tokens (0 = marks only)
    noop_ns: dict[int, float]
    instrumented_ns: dict[int, float]
    drain_ns: float  # per request, the background thread's SDK recording

    def overhead_ns(self, tokens: int) -> float:
        return self.instrumented_ns[tokens] - self.bare_ns[tokens]

    @property
    def per_token_ns(self) -> float:
        return (self.overhead_ns(SERVING_TOKENS) - self.overhead_ns(0)) / SERVING_TOKENS


def serving(requests: int, blocks: int) -> Serving:
    """Bare, no-op and instrumented request loops, rotated; medians of block means per request."""
    samples: dict[str, list[float]] = {}
    drains: list[float] = []

    def timed(loop: Callable[[int, int], None], tokens: int) -> float:
        start = perf_counter_ns()
        loop(requests, tokens)
        return (perf_counter_ns() - start) / requests

    def instrumented_block(tokens: int) -> float:
        provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        inst = fls.init(model="bench", provider="bench", meter_provider=provider, otlp="off", flush_interval_s=3600.0)
        try:
            per_request = timed(marked_requests, tokens)
            queued = len(inst.telemetry.pending) if inst.telemetry else 0
            start = perf_counter_ns()
            inst.force_flush()  # the background thread's work, here on this thread
            drains.append((perf_counter_ns() - start) / max(1, queued))
            assert inst.dropped == 0, "the bench must not overflow the queue"
        finally:
            fls.shutdown()
            provider.shutdown()
        return per_request

    variants: list[tuple[str, Callable[[], float]]] = []
    for tokens in (0, SERVING_TOKENS):
        variants += [
            (f"bare{tokens}", lambda t=tokens: timed(bare_requests, t)),
            (f"noop{tokens}", lambda t=tokens: timed(marked_requests, t)),
            (f"instrumented{tokens}", lambda t=tokens: instrumented_block(t)),
        ]
    for _, run in variants:  # warm-up
        run()
    drains.clear()
    for rep in range(blocks):
        first = rep % len(variants)
        for name, run in variants[first:] + variants[:first]:
            samples.setdefault(name, []).append(run())
    by = {name: statistics.median(values) for name, values in samples.items()}
    tokens_cases = (0, SERVING_TOKENS)
    return Serving(
        {t: by[f"bare{t}"] for t in tokens_cases},
        {t: by[f"noop{t}"] for t in tokens_cases},
        {t: by[f"instrumented{t}"] for t in tokens_cases},
        statistics.median(drains),
    )


def print_serving(result: Serving) -> None:
    print(
        f"serving: request → scheduled → first_token → finish (marks), or scheduled + {SERVING_TOKENS} x token() "
        f"(streamed); module API + MeterProvider; the server thread's cost per request, as a share of a "
        f"{SERVING_REQUEST_S:g} s request"
    )
    header = ("request", "uninstrumented", "no-op (before init)", "instrumented", "overhead", "of 1 s", "target")
    rows = []
    for tokens, label in ((0, "marks only"), (SERVING_TOKENS, f"streamed, {SERVING_TOKENS} tokens")):
        ratio = result.overhead_ns(tokens) / (SERVING_REQUEST_S * 1e9)
        target = tokens == SERVING_TOKENS
        rows.append(
            (
                label,
                f"{result.bare_ns[tokens] / 1e3:.3f} µs",
                f"{result.noop_ns[tokens] / 1e3:.3f} µs",
                f"{result.instrumented_ns[tokens] / 1e3:.3f} µs",
                f"{result.overhead_ns(tokens) / 1e3:+.3f} µs",
                f"{ratio:.5%}",
                f"< {TARGET_SERVING_RATIO:.1%}" if target else "",
                (ratio < TARGET_SERVING_RATIO) if target else None,
            )
        )
    widths = [max(len(h), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    print(
        f"{header[0]:<{widths[0]}} "
        + " ".join(f"{h:>{w}}" for h, w in zip(header[1:], widths[1:], strict=False))
        + "  ok?"
    )
    for *cells, ok in rows:
        print(
            f"{cells[0]:<{widths[0]}} "
            + " ".join(f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=False))
            + f"  {'' if ok is None else 'yes' if ok else 'NO'}"
        )
    print(
        f"per token() call: {result.per_token_ns:.0f} ns; the telemetry thread's SDK recording (drain): "
        f"{result.drain_ns / 1e3:.1f} µs CPU per request, off the server's thread"
    )


def serving_json(result: Serving) -> dict[str, float]:
    return {
        "serving_overhead_ns_per_request": round(result.overhead_ns(0), 1),
        "serving_overhead_ns_per_token": round(result.per_token_ns, 1),
        "serving_overhead_ratio_1s": round(result.overhead_ns(SERVING_TOKENS) / (SERVING_REQUEST_S * 1e9), 8),
        "serving_noop_ns_per_request": round(result.noop_ns[0] - result.bare_ns[0], 1),
        "serving_telemetry_cpu_us_per_request": round(result.drain_ns / 1e3, 2),
    }


def training(blocks: int, divisor: int) -> dict[str, float]:
    """The training case: prints its table, returns its JSON fields."""
    print(
        f"empty phases: {EMPTY_BLOCKS_PER_BLOCK * blocks} x {EMPTY_STEPS_PER_BLOCK} steps per variant...",
        file=sys.stderr,
        flush=True,
    )
    phase = per_phase(EMPTY_STEPS_PER_BLOCK, EMPTY_BLOCKS_PER_BLOCK * blocks)
    results: dict[int, Result] = {}
    for step_ms in STEP_SIZES_MS:
        steps = max(1, STEPS_PER_BLOCK[step_ms] // divisor)
        print(f"{step_ms} ms steps: {blocks} x {steps} steps per variant...", file=sys.stderr, flush=True)
        results[step_ms] = interleaved(steps, phase_work(step_ms), blocks)

    print(
        f"a step = {PHASES} phases ({', '.join(f'{n} {s:.0%}' for n, s in SHARES.items())}) of busy-wait; "
        f"median of {blocks} interleaved blocks per variant; instrumented = module API + SDK providers, "
        f"span tree every 100 steps, fl.init()/fl.shutdown() per block (shutdown timed)"
    )
    print(
        f"the same empty loop before fl.init() (every call a no-op): "
        f"{(phase.noop_ns - phase.bare_ns) / PHASES / 1e3:.3f} µs per phase"
    )
    rows: list[tuple[str, str, str, str, str, bool | None]] = []
    for step_ms, r in results.items():
        target = step_ms == 10
        rows.append(
            (
                f"{step_ms} ms step",
                f"{r.bare_ns / 1e6:.4f} ms",
                f"{r.instrumented_ns / 1e6:.4f} ms",
                f"{r.ratio:+.3%} ({(r.instrumented_ns - r.bare_ns) / 1e3:.1f} µs)",
                f"< {TARGET_RATIO_10MS:.0%}" if target else "",
                r.ratio < TARGET_RATIO_10MS if target else None,
            )
        )
    rows.append(
        (
            "per step, empty phases",
            f"{phase.bare_ns / 1e3:.3f} µs",
            f"{phase.instrumented_ns / 1e3:.3f} µs",
            f"{phase.step_overhead_ns / 1e3:+.3f} µs",
            "",
            None,
        )
    )
    rows.append(
        (
            "per phase, empty phases",
            "",
            "",
            f"{phase.phase_overhead_ns / 1e3:+.3f} µs",
            f"< {TARGET_US_PER_PHASE:g} µs",
            phase.phase_overhead_ns / 1e3 < TARGET_US_PER_PHASE,
        )
    )
    header = ("step", "uninstrumented", "instrumented", "overhead", "target")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(
        f"{header[0]:<{widths[0]}} "
        + " ".join(f"{h:>{w}}" for h, w in zip(header[1:], widths[1:], strict=False))
        + "  ok?"
    )
    for *cells, ok in rows:
        print(
            f"{cells[0]:<{widths[0]}} "
            + " ".join(f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=False))
            + f"  {'' if ok is None else 'yes' if ok else 'NO'}"
        )
    print(
        "telemetry CPU off the training thread (drain → SDK metrics and spans), per step: "
        + ", ".join(f"{r.telemetry_ns / 1e3:.1f} µs at {ms} ms" for ms, r in results.items())
        + f"; the training thread's own cost is {phase.step_overhead_ns / 1e3:.1f} µs/step"
    )
    return {
        "overhead_us_per_phase": round(phase.phase_overhead_ns / 1e3, 3),
        "overhead_ratio_10ms": round(results[10].ratio, 5),
        "overhead_ratio_1ms": round(results[1].ratio, 5),
        "overhead_ratio_100ms": round(results[100].ratio, 5),
        "overhead_us_per_step": round(phase.step_overhead_ns / 1e3, 3),
        "noop_us_per_phase": round((phase.noop_ns - phase.bare_ns) / PHASES / 1e3, 3),
        **{f"telemetry_cpu_us_per_step_{ms}ms": round(r.telemetry_ns / 1e3, 2) for ms, r in results.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, help="interleaved repetitions per case (default 5, --quick 3)")
    parser.add_argument("--quick", action="store_true", help=f"1/{QUICK_DIVISOR} of the steps: a smoke run")
    parser.add_argument("--case", choices=("all", "training", "serving"), default="all")
    args = parser.parse_args()
    blocks = args.blocks or (3 if args.quick else 5)
    if blocks < 1:
        parser.error("--blocks must be at least 1")
    divisor = QUICK_DIVISOR if args.quick else 1
    figures: dict[str, float] = {}
    if args.case in ("all", "training"):
        figures.update(training(blocks, divisor))
    if args.case in ("all", "serving"):
        requests = max(100, SERVING_REQUESTS_PER_BLOCK // divisor)
        print(
            f"serving: {SERVING_BLOCKS_PER_BLOCK * blocks} x {requests} requests per variant...",
            file=sys.stderr,
            flush=True,
        )
        result = serving(requests, SERVING_BLOCKS_PER_BLOCK * blocks)
        print_serving(result)
        figures.update(serving_json(result))
    print(json.dumps({"bench": "instrumentation", **figures, "blocks": blocks, "quick": args.quick}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
