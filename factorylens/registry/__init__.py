"""The factorylens signal registry: one source of truth for names, units and attributes.

The receivers create their instruments from it, ``factorylens metrics`` prints it, the Prometheus
endpoint takes its names from it, and tests fail when emitted data drifts from it.
"""

from factorylens.registry._catalog import (
    CLOCK_EVENT_REASONS,
    COMPONENTS,
    GPU_ERROR_TYPES,
    GPU_RECEIVER,
    HW_STATES,
    INSTRUMENTATION,
    RCA_SERVICE,
    REGISTRY,
    TRAIN_PHASES,
)
from factorylens.registry._model import (
    AttributeSpec,
    Domain,
    EventSpec,
    Instrument,
    MetricSpec,
    Registry,
    Source,
    prometheus_label,
    prometheus_name,
)

__all__ = [
    "CLOCK_EVENT_REASONS",
    "COMPONENTS",
    "GPU_ERROR_TYPES",
    "GPU_RECEIVER",
    "HW_STATES",
    "INSTRUMENTATION",
    "RCA_SERVICE",
    "REGISTRY",
    "TRAIN_PHASES",
    "AttributeSpec",
    "Domain",
    "EventSpec",
    "Instrument",
    "MetricSpec",
    "Registry",
    "Source",
    "prometheus_label",
    "prometheus_name",
]
