"""Training-code instrumentation: where each step's time goes, joined to the GPUs it ran on.

Three lines in a training script::

    import factorylens.instrumentation as fl
    fl.init(job_id="llm-7b", team="foundation-models", model_flops_per_sample=6 * 7e9 * 2048)
    for batch in fl.timed(loader):                 # the wait for each batch is the "data" phase
        with fl.step(samples=len(batch)):
            with fl.forward(): ...
            with fl.backward(): ...
            with fl.optimizer(): ...

Phases: ``data``, ``h2d``, ``forward``, ``backward``, ``optimizer``, ``collective`` (bytes, world
size), ``checkpoint_save`` / ``checkpoint_load`` (path → file system, bytes), ``evaluation``, or any
name with ``phase(name)``. PyTorch users get all of it automatically from
``factorylens.instrumentation.torch``. Exports over OTLP with the standard ``OTEL_*`` variables, or
joins the application's SDK providers. Before ``init()`` every call is a no-op.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from factorylens.instrumentation._config import ConfigError, TrainingConfig
from factorylens.instrumentation._instrumentor import TrainingInstrumentor, active
from factorylens.instrumentation._recorder import Phase

T = TypeVar("T")

__all__ = [
    "ConfigError",
    "TrainingConfig",
    "TrainingInstrumentor",
    "active",
    "backward",
    "checkpoint_load",
    "checkpoint_save",
    "collective",
    "data",
    "evaluation",
    "forward",
    "h2d",
    "init",
    "optimizer",
    "phase",
    "shutdown",
    "step",
    "timed",
]


class _Noop:
    """What a phase is before ``init()``: a context manager (or begin/end pair) that does nothing."""

    def __enter__(self) -> _Noop:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    start = __enter__

    def stop(self) -> None:
        return None


_NOOP = _Noop()


class _StepAtCallTime:
    """``fl.step(...)``: a context manager, or a decorator that finds the active instrumentor on each
    call (so a function decorated at import time, before ``init()``, is still measured)."""

    __slots__ = ("_entered", "samples", "tokens")

    def __init__(self, samples: int, tokens: int) -> None:
        self.samples = samples
        self.tokens = tokens
        self._entered: Any = None

    def __enter__(self) -> Any:
        current = active()
        self._entered = current.step(self.samples, self.tokens) if current else _NOOP
        return self._entered.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._entered.__exit__(*exc)

    def __call__(self, function: Any) -> Any:
        samples, tokens = self.samples, self.tokens

        @functools.wraps(function)
        def stepped(*args: Any, **kwargs: Any) -> Any:
            with _StepAtCallTime(samples, tokens):
                return function(*args, **kwargs)

        return stepped


def init(
    job_id: str | None = None,
    team: str | None = None,
    *,
    meter_provider: Any = None,
    tracer_provider: Any = None,
    otlp: str = "auto",
    console: bool = False,
    **options: Any,
) -> TrainingInstrumentor:
    """Instrument this process (once); ``options`` are :class:`TrainingConfig` fields."""
    current = active()
    if current is not None:
        return current
    given = {k: v for k, v in {"job_id": job_id, "team": team, **options}.items() if v is not None}
    config = TrainingConfig(**given)
    return TrainingInstrumentor(
        config, meter_provider=meter_provider, tracer_provider=tracer_provider, otlp=otlp, console=console
    ).instrument()


def shutdown() -> None:
    """Flush everything and stop (also safe when ``init()`` was never called)."""
    current = active()
    if current is not None:
        current.uninstrument()


def step(samples: int = 0, tokens: int = 0) -> _StepAtCallTime:
    """A training step: ``with fl.step(samples=n):`` or ``@fl.step()`` on the step function."""
    return _StepAtCallTime(samples, tokens)


def phase(name: str, **attributes: Any) -> Phase | _Noop:
    current = active()
    return current.phase(name, **attributes) if current else _NOOP


def data() -> Phase | _Noop:
    current = active()
    return current.data() if current else _NOOP


def h2d(bytes: int | None = None) -> Phase | _Noop:
    current = active()
    return current.h2d(bytes) if current else _NOOP


def forward() -> Phase | _Noop:
    current = active()
    return current.forward() if current else _NOOP


def backward() -> Phase | _Noop:
    current = active()
    return current.backward() if current else _NOOP


def optimizer() -> Phase | _Noop:
    current = active()
    return current.optimizer() if current else _NOOP


def collective(bytes: int = 0, world_size: int | None = None, op: str = "all_reduce") -> Phase | _Noop:
    current = active()
    return current.collective(bytes, world_size, op) if current else _NOOP


def checkpoint_save(path: str | os.PathLike, bytes: int | None = None) -> Phase | _Noop:
    current = active()
    return current.checkpoint_save(path, bytes) if current else _NOOP


def checkpoint_load(path: str | os.PathLike, bytes: int | None = None) -> Phase | _Noop:
    current = active()
    return current.checkpoint_load(path, bytes) if current else _NOOP


def evaluation() -> Phase | _Noop:
    current = active()
    return current.evaluation() if current else _NOOP


def timed(batches: Iterable[T]) -> Iterator[T]:
    """Iterate ``batches``, timing each fetch as the next step's ``data`` phase."""
    iterator = iter(batches)
    while True:
        start = time.perf_counter_ns()
        try:
            batch = next(iterator)
        except StopIteration:
            return  # the fetch that found the end belongs to no step
        current = active()
        if current is not None:
            current.recorder.add_phase("data", start, time.perf_counter_ns())
        yield batch
