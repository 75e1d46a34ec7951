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
    PROCESSORS,
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
from factorylens.registry._translations import (
    ATTRIBUTE_TRANSLATIONS,
    DCGM_PREFIXES,
    DERIVED_TRANSLATIONS,
    METRIC_TRANSLATIONS,
    PRODUCER_ATTRIBUTES,
    PRODUCER_SCOPES,
    AttributeTranslation,
    DerivedTranslation,
    MetricTranslation,
    Producer,
)

__all__ = [
    "ATTRIBUTE_TRANSLATIONS",
    "CLOCK_EVENT_REASONS",
    "COMPONENTS",
    "DCGM_PREFIXES",
    "DERIVED_TRANSLATIONS",
    "GPU_ERROR_TYPES",
    "GPU_RECEIVER",
    "HW_STATES",
    "INSTRUMENTATION",
    "METRIC_TRANSLATIONS",
    "PROCESSORS",
    "PRODUCER_ATTRIBUTES",
    "PRODUCER_SCOPES",
    "RCA_SERVICE",
    "REGISTRY",
    "TRAIN_PHASES",
    "AttributeSpec",
    "AttributeTranslation",
    "DerivedTranslation",
    "Domain",
    "EventSpec",
    "Instrument",
    "MetricSpec",
    "MetricTranslation",
    "Producer",
    "Registry",
    "Source",
    "prometheus_label",
    "prometheus_name",
]
