"""An instrumented process with in-memory metric reader and span exporter; always uninstrumented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from factorylens.instrumentation import TrainingConfig, TrainingInstrumentor


@dataclass
class Instrumented:
    instrumentor: TrainingInstrumentor
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter

    def flush(self) -> None:
        self.instrumentor.force_flush()

    def points(self, metric: str) -> list[tuple[dict, Any]]:
        """(attributes, point) of every point of ``metric`` in one collection."""
        found = []
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        found += [(dict(p.attributes), p) for p in m.data.data_points]
        return found

    def phase(self, name: str):
        matches = [
            p for a, p in self.points("factorylens.train.phase.duration") if a["factorylens.train.phase"] == name
        ]
        assert len(matches) == 1, f"no {name} phase"
        return matches[0]


@pytest.fixture
def instrument():
    made: list[TrainingInstrumentor] = []

    def make(**config: Any) -> Instrumented:
        identity = {
            "job_id": "job-1",
            "team": "fm",
            "rank": 1,
            "world_size": 4,
            "host": "node-9",
            "gpu_ids": ("GPU-aaaa",),
            "gpu_name": "NVIDIA H100 80GB HBM3",
            "flush_interval_s": 3600.0,
        }
        reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
        tracer_provider = TracerProvider(resource=Resource.create({"service.name": "test"}))
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        instrumentor = TrainingInstrumentor(
            TrainingConfig(**{**identity, **config}),
            meter_provider=MeterProvider(metric_readers=[reader]),
            tracer_provider=tracer_provider,
        ).instrument()
        made.append(instrumentor)
        return Instrumented(instrumentor, reader, spans)

    yield make
    for instrumentor in made:
        instrumentor.uninstrument()
