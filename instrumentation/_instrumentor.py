"""``TrainingInstrumentor``: identity, OTel wiring and the step/phase API of one training process."""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from factorylens import __version__, telemetry
from factorylens.gpus import peak_tflops
from factorylens.instrumentation._config import ConfigError, TrainingConfig
from factorylens.instrumentation._console import ConsoleStepExporter
from factorylens.instrumentation._gpus import discover_gpus
from factorylens.instrumentation._recorder import Phase, Step, StepRecorder
from factorylens.instrumentation._telemetry import TrainingTelemetry
from factorylens.registry import Attributes

log = logging.getLogger(__name__)

SCOPE = "factorylens.instrumentation"
OTLP_MODES = ("auto", "on", "off")


class TrainingInstrumentor:
    """Instruments one training process: ``instrument()``, then ``step()`` and the phases.

    Args:
        config: identity and sampling (defaults from the environment, see :class:`TrainingConfig`).
        meter_provider, tracer_provider: providers to join; by default the global ones when the
            application configured SDK providers, else our own with OTLP exporters from the standard
            ``OTEL_*`` variables (``otlp``: auto = when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set).
        console: also print each sampled step as a line on stderr (our own tracer provider only).
        nvml: a pynvml-compatible module for GPU discovery (tests pass the simulator's).
    """

    def __init__(
        self,
        config: TrainingConfig | None = None,
        *,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        otlp: str = "auto",
        console: bool = False,
        nvml: Any = None,
    ) -> None:
        self.config = config or TrainingConfig()
        self.config.validate()
        if otlp not in OTLP_MODES:
            raise ConfigError(f"otlp={otlp!r}: expected one of {OTLP_MODES}")
        self._otlp = otlp
        self._console = console
        self._nvml = nvml
        self._meter_provider = meter_provider
        self._tracer_provider = tracer_provider
        self._own_providers: list[Any] = []
        self.recorder = StepRecorder(self.config.max_pending_steps)
        self.telemetry: TrainingTelemetry | None = None
        self._on_uninstrument: list[Any] = []

    # ---- lifecycle -------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Resource attributes: job, team, rank, host and the rank's GPUs (``hw.id``)."""
        c = self.config
        attributes: dict[str, Any] = {
            Attributes.FACTORYLENS_JOB_ID: c.job_id,
            Attributes.FACTORYLENS_RANK: c.rank,
            Attributes.FACTORYLENS_WORLD_SIZE: c.world_size,
            Attributes.HOST_NAME: c.host,
        }
        if c.team:
            attributes[Attributes.FACTORYLENS_TEAM] = c.team
        if c.gpu_ids:
            attributes[Attributes.FACTORYLENS_GPU_IDS] = list(c.gpu_ids)
            if len(c.gpu_ids) == 1:
                attributes[Attributes.HW_ID] = c.gpu_ids[0]
        for variable, key in (("SLURM_JOB_ID", Attributes.SLURM_JOB_ID),):
            if os.environ.get(variable):
                attributes[key] = os.environ[variable]
        return attributes

    def instrument(self) -> TrainingInstrumentor:
        if self.telemetry is not None:
            return self
        c = self.config
        if not c.gpu_ids:
            c.gpu_ids, found_name = discover_gpus(c.local_rank, self._nvml)
            c.gpu_name = c.gpu_name or found_name
        if not c.peak_flops and c.gpu_name:
            tflops = peak_tflops(c.gpu_name)
            c.peak_flops = tflops * 1e12 * max(1, len(c.gpu_ids)) if tflops else 0.0
        if c.model_flops_per_sample and not c.peak_flops:
            log.warning("MFU is off: the GPU's peak FLOPS is unknown (set peak_flops or FACTORYLENS_GPU_NAME)")
        identity = self.identity()
        meter_provider, tracer_provider = self._providers(identity)
        self.telemetry = TrainingTelemetry(
            c,
            self.recorder,
            meter_provider.get_meter(SCOPE, __version__),
            tracer_provider.get_tracer(SCOPE, __version__),
            identity,
        )
        self.telemetry.start()
        _set_active(self)
        return self

    def _providers(self, identity: dict[str, Any]) -> tuple[Any, Any]:
        meter_provider, tracer_provider = self._meter_provider, self._tracer_provider
        global_meters, global_tracers = metrics_api.get_meter_provider(), trace_api.get_tracer_provider()
        if meter_provider is None and isinstance(global_meters, MeterProvider):
            meter_provider = global_meters
        if tracer_provider is None and isinstance(global_tracers, TracerProvider):
            tracer_provider = global_tracers
        use_otlp = self._otlp == "on" or (
            self._otlp == "auto"
            and (telemetry.otlp_endpoint_configured("metrics") or telemetry.otlp_endpoint_configured("traces"))
        )
        resource = telemetry.make_resource(identity, "factorylens-training")
        if meter_provider is None:
            readers = (
                [telemetry.periodic_reader(telemetry.otlp_metric_exporter(), self.config.export_interval_s)]
                if use_otlp
                else []
            )
            meter_provider = telemetry.make_meter_provider(resource, readers)
            self._own_providers.append(meter_provider)
        if tracer_provider is None:
            tracer_provider = TracerProvider(resource=resource)
            if use_otlp:
                tracer_provider.add_span_processor(BatchSpanProcessor(telemetry.otlp_span_exporter()))
            if self._console:
                tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleStepExporter()))
            self._own_providers.append(tracer_provider)
        return meter_provider, tracer_provider

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Turn every finished step into telemetry and push it out now."""
        if self.telemetry is not None:
            self.recorder.deliver_loose()
            self.telemetry.drain(final=True)
        ok = True
        for provider in self._flushable():
            ok = bool(provider.force_flush(timeout_millis)) and ok
        return ok

    def _flushable(self) -> list[Any]:
        providers = list(self._own_providers)
        for provider in (self._meter_provider, self._tracer_provider):
            if provider is not None and provider not in providers and hasattr(provider, "force_flush"):
                providers.append(provider)
        return providers

    def on_uninstrument(self, callback: Any) -> None:
        """Run ``callback`` when this instrumentor is uninstrumented (integrations remove their hooks)."""
        self._on_uninstrument.append(callback)

    def uninstrument(self, timeout_millis: float = 10_000) -> None:
        """Remove integrations, flush, stop the background thread and our own providers (never the
        application's)."""
        if self.telemetry is None:
            return
        try:
            for callback in reversed(self._on_uninstrument):
                callback()
            self.telemetry.shutdown(timeout_millis / 1000)
            self.force_flush(timeout_millis)
        finally:
            for provider in self._own_providers:
                try:
                    provider.shutdown()
                except Exception:
                    log.exception("shutting down an OTel provider failed")
            self._own_providers = []
            self._on_uninstrument = []
            self.telemetry = None
            _set_active(None, only_if=self)

    # ---- the step API ----------------------------------------------------------------------------
    def step(self, samples: int = 0, tokens: int = 0) -> Step:
        """A training step: ``with step(samples=n):`` or ``@step()`` on the step function."""
        return self.recorder.step(samples, tokens)

    def phase(self, name: str, **attributes: Any) -> Phase:
        return self.recorder.phase(name, attributes or None)

    def data(self) -> Phase:
        """Waiting on the input pipeline (the next batch)."""
        return self.recorder.phase("data", None)

    def h2d(self, bytes: int | None = None) -> Phase:
        return self.recorder.phase("h2d", {"bytes": bytes} if bytes else None)

    def forward(self) -> Phase:
        return self.recorder.phase("forward", None)

    def backward(self) -> Phase:
        return self.recorder.phase("backward", None)

    def optimizer(self) -> Phase:
        return self.recorder.phase("optimizer", None)

    def collective(self, bytes: int = 0, world_size: int | None = None, op: str = "all_reduce") -> Phase:
        return self.recorder.phase(
            "collective", {"bytes": bytes, "world_size": world_size or self.config.world_size, "op": op}
        )

    def checkpoint_save(self, path: str | os.PathLike, bytes: int | None = None) -> Phase:
        """Saving a checkpoint to ``path``; its size is read from the file afterwards unless given."""
        return self.recorder.phase("checkpoint.save", {"path": os.fspath(path), "bytes": bytes})

    def checkpoint_load(self, path: str | os.PathLike, bytes: int | None = None) -> Phase:
        return self.recorder.phase("checkpoint.load", {"path": os.fspath(path), "bytes": bytes})

    def evaluation(self) -> Phase:
        return self.recorder.phase("eval", None)


_active: TrainingInstrumentor | None = None


def _set_active(instrumentor: TrainingInstrumentor | None, only_if: TrainingInstrumentor | None = None) -> None:
    global _active
    if only_if is None or _active is only_if:
        _active = instrumentor


def active() -> TrainingInstrumentor | None:
    return _active
