"""Finished steps → OTel metrics and span trees, on a background thread.

Histograms and counters are recorded here, off the training thread; rates and ratios (samples/s,
tokens/s, data-wait ratio, MFU, goodput, checkpoint throughput) are observable gauges computed over
the window between two collections. A step gets a span tree (the step, a child per phase, with the
measured times) every ``span_every_steps`` steps, and whenever it is slow (beyond
``slow_step_factor`` × the running median) or raised: the steps an explanation needs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import Status, StatusCode, Tracer, set_span_in_context

from factorylens.instrumentation._config import TrainingConfig
from factorylens.instrumentation._instruments import instrument_spec, observe_current
from factorylens.instrumentation._recorder import StepRecord, StepRecorder
from factorylens.registry import Attributes, Metrics

log = logging.getLogger(__name__)

UNPRODUCTIVE_PHASES = frozenset({"data", "checkpoint.save", "checkpoint.load", "eval"})
MEDIAN_WINDOW = 101
MIN_STEPS_FOR_SLOW = 10
CHECKPOINT = ("checkpoint.save", "checkpoint.load")
FINAL_DEVICE_WAIT_S = 5.0
_SPAN_ATTRIBUTE_PREFIX = {
    "collective": "factorylens.collective",
    "checkpoint.save": "factorylens.checkpoint",
    "checkpoint.load": "factorylens.checkpoint",
}


def mountpoint(path: str) -> str:
    """The mount point holding ``path`` (the file system a checkpoint went to)."""
    current = Path(os.path.abspath(path))
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return str(current)


@functools.lru_cache(maxsize=256)
def _phase_attributes(name: str) -> dict[str, str]:
    """One attribute dict per phase name, reused (the SDK only reads it)."""
    return {Attributes.FACTORYLENS_TRAIN_PHASE: name}


def path_size(path: str, modified_since_ns: int = 0) -> int:
    """Bytes in a checkpoint file, or in the files of a checkpoint directory written since the save
    began (not older checkpoints, nor shards other ranks wrote before it)."""
    try:
        if os.path.isdir(path):
            total = 0
            for root, _, files in os.walk(path):
                for name in files:
                    info = os.stat(os.path.join(root, name))
                    if info.st_mtime_ns >= modified_since_ns:
                        total += info.st_size
            return total
        return os.path.getsize(path)
    except OSError:
        return 0


def _interval_union_ns(phases: Iterable[tuple[int, int]]) -> int:
    total, reach = 0, None
    for start, end in sorted(phases):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


class GoodputLedger:
    """Productive time and the job's first start, kept in ``state_dir`` across restarts.

    The ledger is written when a checkpoint is saved: after a crash, the work since the last
    checkpoint is redone, so it is not counted twice; the downtime counts against goodput because
    the wall clock runs from the job's first start.
    """

    def __init__(self, config: TrainingConfig, wall_clock_ns: Callable[[], int] | None = None) -> None:
        self.path = (
            Path(config.state_dir) / f"goodput-{config.job_id}-rank{config.rank}.json" if config.state_dir else None
        )
        self._wall_clock_ns = wall_clock_ns or time.time_ns
        self.job_start_ns = self._wall_clock_ns()
        self.productive_s = 0.0
        if self.path is not None and self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
                self.job_start_ns = int(saved["job_start_ns"])
                self.productive_s = float(saved["productive_s_at_checkpoint"])
            except (OSError, ValueError, KeyError) as exc:
                log.warning("goodput state %s is unreadable (%s); starting a new ledger", self.path, exc)
        if self.path is not None and not self.path.exists():
            self.checkpointed()  # the job's first start, even if it crashes before its first checkpoint

    def goodput(self) -> float:
        wall = (self._wall_clock_ns() - self.job_start_ns) / 1e9
        return min(1.0, self.productive_s / wall) if wall > 0 else 0.0

    def checkpointed(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({"job_start_ns": self.job_start_ns, "productive_s_at_checkpoint": self.productive_s})
            )
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("could not save goodput state to %s: %s", self.path, exc)


class TrainingTelemetry:
    """Drains a :class:`StepRecorder` into OTel instruments and spans; owns the background thread.

    ``clock`` (monotonic seconds: the rate window), ``wall_clock_ns`` (goodput's wall clock) and
    ``mountpoint_of`` (a checkpoint path's file system) are injectable, so a simulation can run the
    real telemetry in simulated time with simulated mounts (``factorylens.simulation``).
    """

    def __init__(
        self,
        config: TrainingConfig,
        recorder: StepRecorder,
        meter: Meter,
        tracer: Tracer,
        span_attributes: dict[str, Any],
        *,
        clock: Callable[[], float] | None = None,
        wall_clock_ns: Callable[[], int] | None = None,
        mountpoint_of: Callable[[str], str] | None = None,
    ) -> None:
        self.config = config
        self.recorder = recorder
        self.tracer = tracer
        self.span_attributes = span_attributes
        self._clock = clock or time.monotonic
        self._mountpoint_of = mountpoint_of or mountpoint
        self.ledger = GoodputLedger(config, wall_clock_ns)
        self._lock = threading.Lock()
        self._started = self._clock()
        # (monotonic end, samples, tokens, step seconds, data seconds) of the steps in the rate window
        self._window: deque[tuple[float, int, int, float, float]] = deque()
        self._checkpoint_rate: dict[tuple[str, str], float] = {}
        self._recent: deque[float] = deque(maxlen=MEDIAN_WINDOW)
        self._waiting: list[StepRecord] = []  # steps whose device timings are not complete yet
        self._drain_lock = threading.Lock()  # the thread, force_flush() and shutdown() all drain
        self.steps_done = 0
        self.spans_emitted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._instruments(meter)

    def _instruments(self, meter: Meter) -> None:
        spec = instrument_spec
        self.step_duration = meter.create_histogram(**spec(Metrics.FACTORYLENS_TRAIN_STEP_DURATION))
        self.phase_duration = meter.create_histogram(**spec(Metrics.FACTORYLENS_TRAIN_PHASE_DURATION))
        self.checkpoint_duration = meter.create_histogram(**spec(Metrics.FACTORYLENS_CHECKPOINT_DURATION))
        self.collective_duration = meter.create_histogram(**spec(Metrics.FACTORYLENS_COLLECTIVE_DURATION))
        self.steps = meter.create_counter(**spec(Metrics.FACTORYLENS_TRAIN_STEPS))
        self.samples = meter.create_counter(**spec(Metrics.FACTORYLENS_TRAIN_SAMPLES))
        self.tokens = meter.create_counter(**spec(Metrics.FACTORYLENS_TRAIN_TOKENS))
        self.checkpoint_io = meter.create_counter(**spec(Metrics.FACTORYLENS_CHECKPOINT_IO))
        self.collective_io = meter.create_counter(**spec(Metrics.FACTORYLENS_COLLECTIVE_IO))
        observe_current(
            meter,
            self,
            (
                (Metrics.FACTORYLENS_TRAIN_SAMPLES_RATE, "_rates"),
                (Metrics.FACTORYLENS_TRAIN_TOKENS_RATE, "_token_rate"),
                (Metrics.FACTORYLENS_DATA_WAIT_RATIO, "_data_wait"),
                (Metrics.FACTORYLENS_TRAIN_GOODPUT, "_goodput"),
                (Metrics.FACTORYLENS_CHECKPOINT_THROUGHPUT, "_checkpoint_throughput"),
                (Metrics.FACTORYLENS_TRAIN_MFU, "_mfu"),
            ),
            (Metrics.FACTORYLENS_TRAIN_TELEMETRY_DROPPED, "_dropped"),
        )

    # ---- observable callbacks (the reader's thread) ---------------------------------------------
    def _window_sums(self) -> tuple[float, int, int, float, float]:
        """(seconds covered, samples, tokens, step seconds, data seconds) over the last export interval."""
        now = self._clock()
        span = min(self.config.export_interval_s, now - self._started)
        with self._lock:
            while self._window and self._window[0][0] < now - self.config.export_interval_s:
                self._window.popleft()
            rows = list(self._window)
        return (
            max(span, 1e-9),
            sum(r[1] for r in rows),
            sum(r[2] for r in rows),
            sum(r[3] for r in rows),
            sum(r[4] for r in rows),
        )

    def _rates(self, options: CallbackOptions) -> Iterable[Observation]:
        span, samples, _, _, _ = self._window_sums()
        return [Observation(samples / span)]

    def _token_rate(self, options: CallbackOptions) -> Iterable[Observation]:
        span, _, tokens, _, _ = self._window_sums()
        return [Observation(tokens / span)]

    def _data_wait(self, options: CallbackOptions) -> Iterable[Observation]:
        _, _, _, step_s, data_s = self._window_sums()
        return [Observation(data_s / step_s if step_s else 0.0)]

    def _mfu(self, options: CallbackOptions) -> Iterable[Observation]:
        if not (self.config.model_flops_per_sample and self.config.peak_flops):
            return []
        span, samples, _, _, _ = self._window_sums()
        return [Observation(samples / span * self.config.model_flops_per_sample / self.config.peak_flops)]

    def _goodput(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.ledger.goodput())]

    def _checkpoint_throughput(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            rates = dict(self._checkpoint_rate)
        return [
            Observation(
                rate, {Attributes.FACTORYLENS_CHECKPOINT_OPERATION: op, Attributes.SYSTEM_FILESYSTEM_MOUNTPOINT: mount}
            )
            for (op, mount), rate in rates.items()
        ]

    def _dropped(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.recorder.dropped)]

    # ---- draining (the telemetry thread) ---------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="factorylens-train-telemetry", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.config.flush_interval_s):
            try:
                self.drain()
            except Exception:
                log.exception("training telemetry drain failed")

    def drain(self, *, final: bool = False) -> int:
        """Turn every finished step into telemetry; returns how many steps were handled."""
        with self._drain_lock:
            pending = self.recorder.pending
            while pending:
                self._waiting.append(pending.popleft())
            waiting, self._waiting = self._waiting, []
            handled = samples = tokens = 0
            for record in waiting:
                try:
                    if not self._resolve_device_phases(record, final=final):
                        self._waiting.append(record)
                        continue
                    self._emit(record)
                except Exception:
                    log.exception("could not record telemetry for step %d", record.number)
                if not record.loose:
                    handled += 1
                    samples += record.samples
                    tokens += record.tokens
            if handled:  # counters once per drain: the same sums for a fraction of the SDK calls
                self.steps.add(handled)
                if samples:
                    self.samples.add(samples)
                if tokens:
                    self.tokens.add(tokens)
            return handled

    @staticmethod
    def _resolve_device_phases(record: StepRecord, *, final: bool) -> bool:
        """Move completed device-timed phases into ``phases``; False while some are still running.

        On the final drain, waits up to ``FINAL_DEVICE_WAIT_S`` (a hung GPU must not hang shutdown),
        then keeps the host timings of what has not completed.
        """
        if not record.deferred:
            return True
        deadline = time.monotonic() + FINAL_DEVICE_WAIT_S
        while not all(phase[4].query() for phase in record.deferred):
            if not final:
                return False
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        for name, host_start, host_end, start_event, end_event, attributes, anchor in record.deferred:
            if end_event.query():  # device time, placed on the step's device timeline
                anchor_event, anchor_host = anchor
                host_start = anchor_host + int(anchor_event.elapsed_time(start_event) * 1e6)
                host_end = host_start + int(start_event.elapsed_time(end_event) * 1e6)
            record.phases.append((name, host_start, host_end, attributes))
            record.end = max(record.end, host_end)  # the step ends when its device work does
        record.deferred = []
        return True

    def _emit(self, record: StepRecord) -> None:
        data_ns = 0
        saved = False
        for name, start, end, attributes in record.phases:
            seconds = (end - start) / 1e9
            self.phase_duration.record(seconds, _phase_attributes(name))
            if name == "data":
                data_ns += end - start
            if name in CHECKPOINT:
                since = record.wall_start_ns + (start - record.start)
                saved |= self._checkpoint(name, seconds, attributes or {}, since) and name == "checkpoint.save"
            elif name == "collective":
                op = {Attributes.FACTORYLENS_COLLECTIVE_OP: (attributes or {}).get("op", "unknown")}
                self.collective_duration.record(seconds, op)
                if attributes and attributes.get("bytes"):
                    self.collective_io.add(int(attributes["bytes"]), op)
        if record.loose:  # phases between steps: timings only
            return
        duration = record.duration_s
        self.step_duration.record(duration)
        other_ns = (record.end - record.start) - _interval_union_ns((s, e) for _, s, e, _ in record.phases)
        if other_ns > 0:
            self.phase_duration.record(other_ns / 1e9, _phase_attributes("other"))
        now = self._clock()
        with self._lock:
            self._window.append((now, record.samples, record.tokens, duration, data_ns / 1e9))
            while self._window and self._window[0][0] < now - self.config.export_interval_s:
                self._window.popleft()
        if record.error is None:
            unproductive_ns = _interval_union_ns((s, e) for n, s, e, _ in record.phases if n in UNPRODUCTIVE_PHASES)
            self.ledger.productive_s += max(0.0, duration - unproductive_ns / 1e9)
            if saved:
                self.ledger.checkpointed()
        slow = len(self._recent) >= MIN_STEPS_FOR_SLOW and duration > self.config.slow_step_factor * statistics.median(
            self._recent
        )
        self._recent.append(duration)
        sampled = self.config.span_every_steps and record.number % self.config.span_every_steps == 0
        if sampled or slow or record.error:
            self._span_tree(record, slow)
        self.steps_done += 1

    def _checkpoint(self, name: str, seconds: float, attributes: dict[str, Any], since_wall_ns: int) -> bool:
        """Record a checkpoint phase; True when it went to a file system path (a real checkpoint)."""
        path = str(attributes.get("path") or "")
        if not path:
            return False  # e.g. torch.save into a buffer: not a checkpoint on storage
        op = name.split(".", 1)[1]
        labels = {
            Attributes.FACTORYLENS_CHECKPOINT_OPERATION: op,
            Attributes.SYSTEM_FILESYSTEM_MOUNTPOINT: self._mountpoint_of(path),
        }
        self.checkpoint_duration.record(seconds, labels)
        size = int(attributes.get("bytes") or 0) or path_size(path, since_wall_ns if op == "save" else 0)
        attributes["bytes"] = size
        if size:
            self.checkpoint_io.add(size, labels)
            if seconds > 0:
                with self._lock:
                    self._checkpoint_rate[(op, labels[Attributes.SYSTEM_FILESYSTEM_MOUNTPOINT])] = size / seconds
        return True

    def _span_tree(self, record: StepRecord, slow: bool) -> None:
        def wall(ns: int) -> int:
            return record.wall_start_ns + (ns - record.start)

        attributes = {**self.span_attributes, Attributes.FACTORYLENS_TRAIN_STEP: record.number}
        if record.samples:
            attributes[Metrics.FACTORYLENS_TRAIN_SAMPLES] = record.samples
        if slow:
            attributes["factorylens.train.slow"] = True
        root = self.tracer.start_span("train.step", start_time=record.wall_start_ns, attributes=attributes)
        if record.error:
            root.set_status(Status(StatusCode.ERROR, record.error))
        context = set_span_in_context(root)
        for name, start, end, phase_attributes in sorted(record.phases, key=lambda p: p[1]):
            prefix = _SPAN_ATTRIBUTE_PREFIX.get(name, f"factorylens.train.{name}")
            extra = {f"{prefix}.{k}": v for k, v in (phase_attributes or {}).items()}
            child = self.tracer.start_span(
                f"train.{name}",
                context=context,
                start_time=wall(start),
                attributes={Attributes.FACTORYLENS_TRAIN_PHASE: name, **extra},
            )
            child.end(end_time=wall(end))
        root.end(end_time=wall(record.end))
        self.spans_emitted += 1

    def shutdown(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.recorder.deliver_loose()
        self.drain(final=True)
