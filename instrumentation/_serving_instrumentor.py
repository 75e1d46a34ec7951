"""``ServingInstrumentor``: OTel wiring and the per-request API of one LLM serving process.

A request is a handle with ``__slots__``: its marks (``scheduled()``, ``first_token()``, ``token()``,
``preempted()``) are a clock read and an attribute store, and its end is one append to a bounded
queue; the SDK is called only by the background thread (see ``_serving_telemetry``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry.sdk.metrics import MeterProvider

from factorylens import __version__, telemetry
from factorylens.instrumentation._config import ConfigError
from factorylens.instrumentation._serving_config import DEFAULT_SERVICE_NAME, ServingConfig
from factorylens.instrumentation._serving_telemetry import FINISH_REASONS, RequestRecord, ServingTelemetry
from factorylens.registry import Attributes

log = logging.getLogger(__name__)

SCOPE = "factorylens.instrumentation.serving"
OTLP_MODES = ("auto", "on", "off")
_FINISH_REASONS = frozenset(FINISH_REASONS)
perf_counter_ns = time.perf_counter_ns


def _check_reason(finish_reason: str) -> None:
    if finish_reason not in _FINISH_REASONS:
        raise ValueError(f"finish_reason {finish_reason!r} is not one of {sorted(_FINISH_REASONS)}")


class Request:
    """One request in flight: ``with inst.request(prompt_tokens=n) as r:`` or ``r = inst.request(n)`` …
    ``r.finish(...)``. Times are ``time.perf_counter_ns()``.

    Leaving the ``with`` block without ``finish()`` finishes it (``stop``, the tokens counted so far);
    an exception finishes it as ``error`` with ``error.type`` = the exception's class name (and goes on
    propagating). Marks after the end are ignored; so is a second end.
    """

    __slots__ = (
        "_done",
        "_telemetry",
        "arrival_ns",
        "first_token_ns",
        "output_tokens",
        "preemptions",
        "prompt_tokens",
        "scheduled_ns",
    )

    def __init__(self, telemetry: ServingTelemetry, prompt_tokens: int = 0, arrival_ns: int | None = None) -> None:
        self._telemetry = telemetry
        self._done = False
        self.arrival_ns = perf_counter_ns() if arrival_ns is None else arrival_ns
        self.scheduled_ns: int | None = None
        self.first_token_ns: int | None = None
        self.prompt_tokens = prompt_tokens
        self.output_tokens = 0
        self.preemptions = 0

    def __enter__(self) -> Request:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._done:
            return
        if exc_type is None:
            self.finish()
        else:
            self.fail(exc_type.__name__)

    def scheduled(self) -> None:
        """The request left the queue (its first scheduling; a later one after a preemption is ignored)."""
        if self.scheduled_ns is None:
            self.scheduled_ns = perf_counter_ns()

    def first_token(self) -> None:
        """The first output token is out (the first call counts)."""
        if self.first_token_ns is None:
            self.first_token_ns = perf_counter_ns()

    def token(self, count: int = 1) -> None:
        """``count`` output tokens are out (streaming); the first call also marks the first token."""
        if self.first_token_ns is None:
            self.first_token_ns = perf_counter_ns()
        self.output_tokens += count

    def preempted(self) -> None:
        """The engine evicted the request (its KV cache, to be recomputed)."""
        self.preemptions += 1

    def finish(
        self, output_tokens: int | None = None, finish_reason: str = "stop", prompt_tokens: int | None = None
    ) -> None:
        """The last token is out. ``output_tokens`` overrides the count ``token()`` kept; ``finish_reason``
        is ``stop``, ``length``, ``abort`` (or ``error``, which ``fail()`` sets)."""
        if self._done:
            return
        _check_reason(finish_reason)
        self._end(
            perf_counter_ns(),
            self.output_tokens if output_tokens is None else output_tokens,
            finish_reason,
            None,
            prompt_tokens,
        )

    def fail(self, error: str | BaseException, output_tokens: int | None = None) -> None:
        """The request failed: ``error.type`` is ``error`` (a class name) or the exception's class name."""
        if self._done:
            return
        error_type = error if isinstance(error, str) else type(error).__name__
        self._end(
            perf_counter_ns(), self.output_tokens if output_tokens is None else output_tokens, "error", error_type, None
        )

    def _end(
        self, end_ns: int, output_tokens: int, finish_reason: str, error_type: str | None, prompt_tokens: int | None
    ) -> None:
        self._done = True
        self._telemetry.submit(
            (
                self.arrival_ns,
                self.scheduled_ns,
                self.first_token_ns,
                end_ns,
                self.prompt_tokens if prompt_tokens is None else prompt_tokens,
                output_tokens,
                self.preemptions,
                finish_reason,
                error_type,
            )
        )


class NoopRequest:
    """What a request is before ``instrument()``: the same calls, nothing recorded."""

    arrival_ns = 0
    scheduled_ns = first_token_ns = None
    prompt_tokens = output_tokens = preemptions = 0

    def __enter__(self) -> NoopRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def scheduled(self) -> None:
        return None

    def first_token(self) -> None:
        return None

    def token(self, count: int = 1) -> None:
        return None

    def preempted(self) -> None:
        return None

    def finish(
        self, output_tokens: int | None = None, finish_reason: str = "stop", prompt_tokens: int | None = None
    ) -> None:
        return None

    def fail(self, error: str | BaseException, output_tokens: int | None = None) -> None:
        return None


NOOP_REQUEST = NoopRequest()


class ServingInstrumentor:
    """Instruments one serving process: ``instrument()``, then ``request()`` per request and
    ``set_state()`` for the engine's queue, batch and KV cache.

    Args:
        config: identity and bounds (defaults from the environment, see :class:`ServingConfig`).
        meter_provider: a provider to join; by default the global one when the application configured
            an SDK provider, else our own exporting OTLP per the standard ``OTEL_*`` variables
            (``otlp``: auto = when an OTLP endpoint is set; on; off).
    """

    def __init__(self, config: ServingConfig | None = None, *, meter_provider: Any = None, otlp: str = "auto") -> None:
        self.config = config or ServingConfig()
        self.config.validate()
        if otlp not in OTLP_MODES:
            raise ConfigError(f"otlp={otlp!r}: expected one of {OTLP_MODES}")
        self._otlp = otlp
        self._meter_provider = meter_provider
        self._own_providers: list[Any] = []
        self.telemetry: ServingTelemetry | None = None

    def identity(self) -> dict[str, Any]:
        """Resource attributes: the deployment (job), team, replica, host and GPUs (``service.name``
        comes from the config): the join keys that tie this server's signals to its GPUs and host."""
        c = self.config
        replica = c.replica or (f"{c.host}:{c.server_port}" if c.server_port else c.host)
        attributes: dict[str, Any] = {
            Attributes.HOST_NAME: c.host,
            Attributes.FACTORYLENS_JOB_ID: c.job_id or c.service_name or DEFAULT_SERVICE_NAME,
            Attributes.FACTORYLENS_INFERENCE_REPLICA: replica,
        }
        if c.team:
            attributes[Attributes.FACTORYLENS_TEAM] = c.team
        if c.gpu_ids:
            attributes[Attributes.FACTORYLENS_GPU_IDS] = list(c.gpu_ids)
        return attributes

    def instrument(self) -> ServingInstrumentor:
        if self.telemetry is not None:
            return self
        meter_provider = self._meter_provider
        if meter_provider is None and isinstance(metrics_api.get_meter_provider(), MeterProvider):
            meter_provider = metrics_api.get_meter_provider()
        if meter_provider is None:
            use_otlp = self._otlp == "on" or (self._otlp == "auto" and telemetry.otlp_endpoint_configured("metrics"))
            readers = (
                [
                    telemetry.periodic_reader(
                        telemetry.otlp_metric_exporter(exponential_histograms=True), self.config.export_interval_s
                    )
                ]
                if use_otlp
                else []
            )
            resource = telemetry.make_resource(self.identity(), self.config.service_name or DEFAULT_SERVICE_NAME)
            meter_provider = telemetry.make_meter_provider(resource, readers)
            self._own_providers.append(meter_provider)
        self.telemetry = ServingTelemetry(self.config, meter_provider.get_meter(SCOPE, __version__))
        self.telemetry.start()
        _set_active(self)
        return self

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Record every finished request and push the metrics out now."""
        if self.telemetry is not None:
            self.telemetry.drain()
        ok = True
        providers = list(self._own_providers)
        if self._meter_provider is not None and self._meter_provider not in providers:
            providers.append(self._meter_provider)
        for provider in providers:
            if hasattr(provider, "force_flush"):
                ok = bool(provider.force_flush(timeout_millis)) and ok
        return ok

    def uninstrument(self, timeout_millis: float = 10_000) -> None:
        """Record what is queued, flush, stop the background thread and our own provider (never the
        application's)."""
        if self.telemetry is None:
            return
        try:
            self.telemetry.shutdown(timeout_millis / 1000)
            self.force_flush(timeout_millis)
            if self.telemetry.dropped:
                log.warning(
                    "serving telemetry: %d finished requests were dropped (queue of %d full; "
                    "factorylens.inference.telemetry.dropped)",
                    self.telemetry.dropped,
                    self.config.max_pending_requests,
                )
        finally:
            for provider in self._own_providers:
                try:
                    provider.shutdown()
                except Exception:
                    log.exception("shutting down an OTel provider failed")
            self._own_providers = []
            self.telemetry = None
            _set_active(None, only_if=self)

    # ---- the request API (the server's threads) -----------------------------------------------------
    def request(self, prompt_tokens: int = 0, *, arrival_ns: int | None = None) -> Request | NoopRequest:
        """A request arriving now (or at ``arrival_ns``, a ``time.perf_counter_ns()`` value)."""
        current = self.telemetry
        return NOOP_REQUEST if current is None else Request(current, prompt_tokens, arrival_ns)

    def record(self, record: RequestRecord) -> None:
        """A request timed elsewhere, queued like the handles' (``RequestRecord`` validates itself)."""
        current = self.telemetry
        if current is not None:
            current.submit(record)

    def set_state(
        self, running: int, waiting: int, kv_cache_usage: float | None = None, batch_size: int | None = None
    ) -> None:
        """The engine's state now: requests running and waiting, KV-cache usage (0-1), batch size."""
        current = self.telemetry
        if current is not None:
            current.set_state(running, waiting, kv_cache_usage, batch_size)

    @property
    def dropped(self) -> int:
        """Finished requests not recorded because the queue was full (also exported as a counter)."""
        return self.telemetry.dropped if self.telemetry is not None else 0


_active: ServingInstrumentor | None = None


def _set_active(instrumentor: ServingInstrumentor | None, only_if: ServingInstrumentor | None = None) -> None:
    global _active
    if only_if is None or _active is only_if:
        _active = instrumentor


def active() -> ServingInstrumentor | None:
    return _active


__all__ = ["NOOP_REQUEST", "NoopRequest", "Request", "RequestRecord", "ServingInstrumentor", "active"]
