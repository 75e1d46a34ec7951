"""The hot path: timing steps and phases with ``perf_counter_ns`` and nothing else.

An OTel SDK span costs ~22-37 µs and a histogram record ~10 µs on these machines
(ARCHITECTURE.md section 4), so the training thread never calls the SDK: a phase is two clock reads
and a list append, a finished step is one append to a bounded queue. A background thread turns
steps into metrics and span trees (see ``_telemetry``). If that thread falls behind, steps are
dropped and counted; the training loop never waits.

The input pipeline's work just before a step (``data`` and ``h2d`` phases ending right before it)
belongs to that step: its wall time starts at the first of them. Other phases outside a step (an
evaluation between epochs, a save after the last step) belong to no step: they are delivered on
their own, as phase timings only.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

PhaseTiming = tuple[str, int, int, dict[str, Any] | None]  # name, start, end (perf_counter ns), attributes
# name, host start, host end (perf_counter ns, where the work was queued), start event, end event,
# attributes, and the step's anchor: (an event recorded before the step's first device phase, the
# host time it was recorded at), which places every device phase on one device timeline
DevicePhase = tuple[str, int, int, Any, Any, dict[str, Any] | None, tuple[Any, int]]
perf_counter_ns = time.perf_counter_ns
# a data/h2d phase that ends at most this long before a step starts is part of it (the fetch of its
# batch, glue code between); anything earlier ran between steps
ADJACENT_NS = 100_000_000
CARRIED_PHASES = frozenset({"data", "h2d"})
MAX_LOOSE_PHASES = 10_000


class StepRecord:
    """One finished step: monotonic times, the wall-clock start, and its phases."""

    __slots__ = (
        "deferred",
        "end",
        "error",
        "loose",
        "number",
        "phases",
        "samples",
        "start",
        "tokens",
        "wall_start_ns",
    )

    def __init__(
        self,
        number: int,
        start: int,
        end: int,
        wall_start_ns: int,
        samples: int,
        tokens: int,
        phases: list[PhaseTiming],
        error: str | None,
    ) -> None:
        self.number = number
        self.start = start
        self.end = end
        self.wall_start_ns = wall_start_ns
        self.samples = samples
        self.tokens = tokens
        self.phases = phases
        self.error = error
        # phases timed on a device (CUDA events), resolved by the background thread once complete
        self.deferred: list[DevicePhase] = []
        self.loose = False  # phases that ran outside any step (no step metrics, no span tree)

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / 1e9


class Phase:
    """``with recorder.phase("forward"):`` – also usable as begin/end through ``start()``/``stop()``."""

    __slots__ = ("_recorder", "_start", "attributes", "name")

    def __init__(self, recorder: StepRecorder, name: str, attributes: dict[str, Any] | None) -> None:
        self._recorder = recorder
        self.name = name
        self.attributes = attributes
        self._start = 0

    def __enter__(self) -> Phase:
        self._start = perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        phases = self._recorder.phases
        phases.append((self.name, self._start, perf_counter_ns(), self.attributes))
        if len(phases) > MAX_LOOSE_PHASES:
            self._recorder.deliver_loose()

    start = __enter__

    def stop(self) -> None:
        self.__exit__()


class Step:
    """``with recorder.step(samples=32):`` or ``@recorder.step()`` on the step function."""

    __slots__ = ("_recorder", "_start", "_wall", "samples", "tokens")

    def __init__(self, recorder: StepRecorder, samples: int, tokens: int) -> None:
        self._recorder = recorder
        self.samples = samples
        self.tokens = tokens
        self._start = 0
        self._wall = 0

    def __enter__(self) -> Step:
        recorder = self._recorder
        self._wall = time.time_ns()
        self._start = perf_counter_ns()
        if recorder.phases:  # work for this step that ran just before it (fetching its batch)
            first = recorder.adopt_adjacent(self._start)
            self._wall -= self._start - first
            self._start = first
        recorder.in_step = True
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        recorder = self._recorder
        recorder.in_step = False
        phases, recorder.phases = recorder.phases, []
        recorder.number += 1
        record = StepRecord(
            recorder.number,
            self._start,
            perf_counter_ns(),
            self._wall,
            self.samples,
            self.tokens,
            phases,
            f"{exc_type.__name__}: {exc}" if exc_type else None,
        )
        if recorder.device_phases:
            record.deferred, recorder.device_phases = recorder.device_phases, []
        recorder.device_anchor = None
        recorder.deliver(record)

    def __call__(self, function: Callable) -> Callable:
        recorder, samples, tokens = self._recorder, self.samples, self.tokens

        def stepped(*args: Any, **kwargs: Any) -> Any:
            with Step(recorder, samples, tokens):
                return function(*args, **kwargs)

        stepped.__wrapped__ = function  # type: ignore[attr-defined]
        stepped.__name__ = getattr(function, "__name__", "step")
        stepped.__doc__ = function.__doc__
        return stepped


class StepRecorder:
    """Owned by the training thread; ``pending`` is drained by the telemetry thread."""

    def __init__(self, max_pending_steps: int) -> None:
        self.phases: list[PhaseTiming] = []
        self.device_phases: list[DevicePhase] = []
        self.device_anchor: tuple[Any, int] | None = None
        self.pending: deque[StepRecord] = deque()
        self.max_pending_steps = max_pending_steps
        self.number = 0
        self.dropped = 0
        self.in_step = False

    def step(self, samples: int = 0, tokens: int = 0) -> Step:
        return Step(self, samples, tokens)

    def phase(self, name: str, attributes: dict[str, Any] | None = None) -> Phase:
        return Phase(self, name, attributes)

    def add_phase(self, name: str, start_ns: int, end_ns: int, attributes: dict[str, Any] | None = None) -> None:
        """A phase timed elsewhere (hooks that see only a begin and an end)."""
        self.phases.append((name, start_ns, end_ns, attributes))

    def adopt_adjacent(self, step_start: int) -> int:
        """Keep the chain of phases that ends right before ``step_start``; deliver older ones on their
        own. Returns where the step now starts."""
        boundary, adopted, loose = step_start, [], []
        for phase in sorted(self.phases, key=lambda p: p[2], reverse=True):
            if phase[0] in CARRIED_PHASES and boundary - phase[2] <= ADJACENT_NS:
                adopted.append(phase)
                boundary = min(boundary, phase[1])
            else:
                loose.append(phase)
        self.phases = loose
        if loose:
            self.deliver_loose()
        self.phases = adopted
        return boundary

    def deliver_loose(self) -> None:
        """Hand the phases recorded so far to the telemetry thread as timings that belong to no step
        (never while a step is open: they are that step's)."""
        if self.in_step:
            return
        phases, self.phases = self.phases, []
        if not phases:
            return
        record = StepRecord(0, min(p[1] for p in phases), max(p[2] for p in phases), time.time_ns(), 0, 0, phases, None)
        record.loose = True
        self.deliver(record)

    def deliver(self, record: StepRecord) -> None:
        if len(self.pending) >= self.max_pending_steps:
            self.dropped += 1
            return
        self.pending.append(record)
