"""What the training and the serving telemetry share about their OTel instruments: the keyword arguments
from the registry, and observable instruments that outlive a re-init."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypedDict

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from factorylens.registry import REGISTRY


class InstrumentSpec(TypedDict):
    """The keyword arguments an OTel instrument is created with, from the registry."""

    name: str
    unit: str
    description: str


def instrument_spec(name: str) -> InstrumentSpec:
    m = REGISTRY.metric(name)
    return {"name": m.name, "unit": m.unit, "description": m.description}


# a meter → the telemetry its observable instruments read now (one list per kind of telemetry)
_CURRENT: weakref.WeakKeyDictionary[Meter, dict[str, list[Any]]] = weakref.WeakKeyDictionary()


def observe_current(
    meter: Meter, telemetry: Any, gauges: Sequence[tuple[str, str]], counter: tuple[str, str] | None = None
) -> None:
    """Observable gauges (and a counter) named by the registry, each read by ``telemetry``'s method of the
    paired name with the callback's options. Observable instruments live as long as the meter and cannot be
    unregistered: they are created once per meter and kind of telemetry, and read whichever is current (an
    in-process re-init joins them)."""
    kinds = _CURRENT.setdefault(meter, {})
    current = kinds.get(type(telemetry).__name__)
    if current is not None:
        current[0] = telemetry
        return
    current = kinds[type(telemetry).__name__] = [telemetry]

    def observe(method: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        return lambda options: getattr(current[0], method)(options)

    for name, method in gauges:
        meter.create_observable_gauge(callbacks=[observe(method)], **instrument_spec(name))
    if counter is not None:
        meter.create_observable_counter(callbacks=[observe(counter[1])], **instrument_spec(counter[0]))
