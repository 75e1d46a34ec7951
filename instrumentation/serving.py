"""Serving-code instrumentation: TTFT, TPOT, queue/prefill/decode time and tokens per request, for a
team's own LLM server, in the OTel GenAI names the normalized vLLM/SGLang/TGI/Triton metrics have.

A few lines in a server::

    import factorylens.instrumentation.serving as fls
    fls.init(model="llama-3.1-8b", provider="my-server", server_port=8000)
    with fls.request(prompt_tokens=len(prompt_ids)) as r:   # arrival: now
        r.scheduled()                                       # left the queue
        for token in generate(prompt_ids):
            r.token()                                       # the first call is the first token
        r.finish(finish_reason="stop")                      # or leave the block; an exception = error
    fls.set_state(running=len(batch), waiting=len(queue), kv_cache_usage=used / total)

``r.preempted()`` counts an eviction; ``fls.record(RequestRecord(...))`` takes a request timed
elsewhere. The server's thread only reads the clock and appends to a bounded queue; a background
thread records into the SDK, and a full queue drops (counted in
``factorylens.inference.telemetry.dropped``), never blocks. Exports over OTLP with the standard
``OTEL_*`` variables, or joins the application's SDK meter provider. Before ``init()`` every call is a
no-op.
"""

from __future__ import annotations

from typing import Any

from factorylens.instrumentation._config import ConfigError
from factorylens.instrumentation._serving_config import ServingConfig
from factorylens.instrumentation._serving_instrumentor import (
    NOOP_REQUEST,
    NoopRequest,
    Request,
    ServingInstrumentor,
    active,
)
from factorylens.instrumentation._serving_telemetry import (
    DURATION_BUCKETS,
    FINISH_REASONS,
    TOKEN_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
    RequestRecord,
    ServingTelemetry,
)

__all__ = [
    "DURATION_BUCKETS",
    "FINISH_REASONS",
    "TOKEN_BUCKETS",
    "TPOT_BUCKETS",
    "TTFT_BUCKETS",
    "ConfigError",
    "NoopRequest",
    "Request",
    "RequestRecord",
    "ServingConfig",
    "ServingInstrumentor",
    "ServingTelemetry",
    "active",
    "force_flush",
    "init",
    "record",
    "request",
    "set_state",
    "shutdown",
]


def init(
    model: str | None = None,
    provider: str | None = None,
    *,
    meter_provider: Any = None,
    otlp: str = "auto",
    **options: Any,
) -> ServingInstrumentor:
    """Instrument this process (once); ``options`` are :class:`ServingConfig` fields."""
    current = active()
    if current is not None:
        return current
    given = {k: v for k, v in {"model": model, "provider": provider, **options}.items() if v is not None}
    return ServingInstrumentor(ServingConfig(**given), meter_provider=meter_provider, otlp=otlp).instrument()


def shutdown() -> None:
    """Record what is queued, flush and stop (also safe when ``init()`` was never called)."""
    current = active()
    if current is not None:
        current.uninstrument()


def force_flush() -> bool:
    current = active()
    return current.force_flush() if current is not None else True


def request(prompt_tokens: int = 0, *, arrival_ns: int | None = None) -> Request | NoopRequest:
    """A request arriving now: ``with fls.request(prompt_tokens=n) as r:`` (see :class:`Request`)."""
    current = active()
    return current.request(prompt_tokens, arrival_ns=arrival_ns) if current is not None else NOOP_REQUEST


def record(record: RequestRecord) -> None:
    """A request timed elsewhere (queued like a handle's)."""
    current = active()
    if current is not None:
        current.record(record)


def set_state(running: int, waiting: int, kv_cache_usage: float | None = None, batch_size: int | None = None) -> None:
    """The engine's state now (requests running and waiting, KV-cache usage 0-1, batch size)."""
    current = active()
    if current is not None:
        current.set_state(running, waiting, kv_cache_usage, batch_size)
