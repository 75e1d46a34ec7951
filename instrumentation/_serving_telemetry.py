"""Finished LLM requests → OTel GenAI and ``factorylens.inference.*`` metrics; the engine's state as gauges.

:class:`RequestRecord` is one finished request in monotonic nanoseconds: the contract between a server
(or the simulator) and :class:`ServingTelemetry`. From it, per request:

- ``gen_ai.server.time_to_first_token`` = first token − arrival;
- ``gen_ai.server.time_per_output_token`` = (duration − TTFT) / (output tokens − 1), as OTel defines
  it (vLLM's ``request_time_per_output_token``, not its inter-token latency), for requests with at
  least two output tokens;
- ``gen_ai.server.request.duration`` = end − arrival, with ``error.type`` on a failed request;
- ``gen_ai.client.token.usage`` by ``gen_ai.token.type`` (input = prompt, output = generated);
- ``factorylens.inference.request.{queue,prefill,decode,inference}_time`` (vLLM's phases: queue =
  scheduled − arrival, prefill = first token − scheduled, decode = end − first token, inference = end −
  scheduled; a preempted request's lost time falls in prefill or decode, as in vLLM);
- the counters ``factorylens.inference.requests.finished`` (by finish reason), ``….tokens`` (by token
  type) and ``….preemptions``.

The engine's state (:meth:`ServingTelemetry.set_state`) is read by observable gauges at collection:
``factorylens.inference.requests.running``, ``….requests.waiting``, ``….kv_cache.usage``,
``….batch.size``. Histograms carry explicit bucket boundaries (the conventions' advice, vLLM's for
TTFT and TPOT) so that p95/p99 TTFT and TPOT are resolvable from the exported buckets.

The server's thread only appends to a bounded queue (:meth:`ServingTelemetry.submit`); a background
thread, or :meth:`ServingTelemetry.drain`, turns it into SDK calls. Overflow is dropped and counted
(``factorylens.inference.telemetry.dropped``), never waited on.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from factorylens.instrumentation._instruments import instrument_spec, observe_current
from factorylens.instrumentation._serving_config import ServingConfig
from factorylens.registry import REGISTRY, Attributes, Metrics

log = logging.getLogger(__name__)

FINISH_REASONS: tuple[str, ...] = REGISTRY.attribute(Attributes.FACTORYLENS_INFERENCE_FINISH_REASON).values or ()
OTHER_ERROR = "_OTHER"  # the conventions' fallback error.type (here: beyond max_error_types distinct ones)
INPUT, OUTPUT = "input", "output"
COMPLETED = frozenset({"stop", "length"})  # finish reasons of a request that ran to its end

# semantic conventions (gen-ai-metrics.md, v1.41.0): TTFT and TPOT take vLLM's buckets (up to 10 s
# and 2.5 s); request duration 0.01 s doubling to 81.92 s; token usage 1, ×4 per step, to 67,108,864
TTFT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
TPOT_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
DURATION_BUCKETS: tuple[float, ...] = tuple(round(0.01 * 2**i, 2) for i in range(14))
TOKEN_BUCKETS: tuple[float, ...] = tuple(float(4**i) for i in range(14))
# the phases take the request duration's buckets: vLLM's (from 0.3 s) cannot resolve a short queue wait

# (arrival, scheduled, first token, end, prompt tokens, output tokens, preemptions, finish reason,
# error type): what the server's thread queues; a RequestRecord is built from it off that thread
PendingRequest = tuple[int, int | None, int | None, int, int, int, int, str, str | None]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One finished request. Times are nanoseconds of one monotonic clock (``time.perf_counter_ns``,
    ``time.monotonic_ns`` or a simulation's): only their differences are used.

    ``scheduled_ns`` (left the queue, first scheduled) and ``first_token_ns`` are ``None`` for a request
    that ended before them. ``error_type`` ``None`` = succeeded; else the error's class (``error.type``).
    """

    arrival_ns: int
    scheduled_ns: int | None
    first_token_ns: int | None
    end_ns: int
    prompt_tokens: int
    output_tokens: int
    preemptions: int = 0
    finish_reason: str = "stop"
    error_type: str | None = None

    def __post_init__(self) -> None:
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(f"finish_reason {self.finish_reason!r} is not one of {list(FINISH_REASONS)}")
        if min(self.prompt_tokens, self.output_tokens, self.preemptions) < 0:
            raise ValueError("prompt_tokens, output_tokens and preemptions must not be negative")
        times = [t for t in (self.arrival_ns, self.scheduled_ns, self.first_token_ns, self.end_ns) if t is not None]
        if times != sorted(times):
            raise ValueError(
                "times must not decrease: arrival ≤ scheduled ≤ first token ≤ end, got "
                f"{self.arrival_ns}, {self.scheduled_ns}, {self.first_token_ns}, {self.end_ns}"
            )

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.arrival_ns) / 1e9

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_ns is None else (self.first_token_ns - self.arrival_ns) / 1e9

    @property
    def tpot_s(self) -> float | None:
        """(duration − TTFT) / (output tokens − 1); ``None`` without a first token or a second token."""
        if self.first_token_ns is None or self.output_tokens < 2:
            return None
        return (self.end_ns - self.first_token_ns) / (self.output_tokens - 1) / 1e9

    @property
    def queue_s(self) -> float | None:
        return None if self.scheduled_ns is None else (self.scheduled_ns - self.arrival_ns) / 1e9

    @property
    def prefill_s(self) -> float | None:
        if self.scheduled_ns is None or self.first_token_ns is None:
            return None
        return (self.first_token_ns - self.scheduled_ns) / 1e9

    @property
    def decode_s(self) -> float | None:
        return None if self.first_token_ns is None else (self.end_ns - self.first_token_ns) / 1e9

    @property
    def inference_s(self) -> float | None:
        return None if self.scheduled_ns is None else (self.end_ns - self.scheduled_ns) / 1e9


def serving_attributes(config: ServingConfig) -> dict[str, Any]:
    """The attributes every serving point carries (the conventions' required and recommended ones)."""
    attributes: dict[str, Any] = {
        Attributes.GEN_AI_OPERATION_NAME: config.operation,
        Attributes.GEN_AI_PROVIDER_NAME: config.provider,
    }
    if config.model:
        attributes[Attributes.GEN_AI_REQUEST_MODEL] = config.model
    if config.server_address:
        attributes[Attributes.SERVER_ADDRESS] = config.server_address
    if config.server_port:
        attributes[Attributes.SERVER_PORT] = config.server_port
    return attributes


class ServingTelemetry:
    """Records :class:`RequestRecord` s and the engine's state into OTel instruments.

    ``record()`` / ``record_many()`` record now, on the calling thread (a simulation, or a server that
    already runs its own exporter thread); ``submit()`` queues for the background thread
    (``start()``) or the next ``drain()``: the server's hot path.
    """

    def __init__(self, config: ServingConfig, meter: Meter) -> None:
        config.validate()
        self.config = config
        self.attributes = serving_attributes(config)
        base = self.attributes
        self._finished = {
            reason: {**base, Attributes.FACTORYLENS_INFERENCE_FINISH_REASON: reason} for reason in FINISH_REASONS
        }
        self._input = {**base, Attributes.GEN_AI_TOKEN_TYPE: INPUT}
        self._output = {**base, Attributes.GEN_AI_TOKEN_TYPE: OUTPUT}
        self._errors: dict[str, dict[str, Any]] = {}
        self.pending: deque[PendingRequest | RequestRecord] = deque()
        self.dropped = 0
        self.invalid = 0  # queued requests whose times or counts were impossible (logged, not recorded)
        self.recorded = 0
        self._drop_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        # (running, waiting, KV-cache usage, batch size) as last set; read by the gauges' callbacks
        self._state: tuple[int, int, float | None, int | None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._instruments(meter)

    def _instruments(self, meter: Meter) -> None:
        def histogram(name: str, buckets: Sequence[float]) -> Any:
            return meter.create_histogram(**instrument_spec(name), explicit_bucket_boundaries_advisory=buckets)

        self.ttft = histogram(Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, TTFT_BUCKETS)
        self.tpot = histogram(Metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, TPOT_BUCKETS)
        self.duration = histogram(Metrics.GEN_AI_SERVER_REQUEST_DURATION, DURATION_BUCKETS)
        self.token_usage = histogram(Metrics.GEN_AI_CLIENT_TOKEN_USAGE, TOKEN_BUCKETS)
        self.queue_time = histogram(Metrics.FACTORYLENS_INFERENCE_REQUEST_QUEUE_TIME, DURATION_BUCKETS)
        self.prefill_time = histogram(Metrics.FACTORYLENS_INFERENCE_REQUEST_PREFILL_TIME, DURATION_BUCKETS)
        self.decode_time = histogram(Metrics.FACTORYLENS_INFERENCE_REQUEST_DECODE_TIME, DURATION_BUCKETS)
        self.inference_time = histogram(Metrics.FACTORYLENS_INFERENCE_REQUEST_INFERENCE_TIME, DURATION_BUCKETS)
        self.finished = meter.create_counter(**instrument_spec(Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED))
        # failures counted from zero: the error rate is a series before the first failure, which is then a change
        self.finished.add(0, self._finished["error"])
        self.tokens = meter.create_counter(**instrument_spec(Metrics.FACTORYLENS_INFERENCE_TOKENS))
        self.preemptions = meter.create_counter(**instrument_spec(Metrics.FACTORYLENS_INFERENCE_PREEMPTIONS))
        observe_current(
            meter,
            self,
            (
                (Metrics.FACTORYLENS_INFERENCE_REQUESTS_RUNNING, "_running"),
                (Metrics.FACTORYLENS_INFERENCE_REQUESTS_WAITING, "_waiting"),
                (Metrics.FACTORYLENS_INFERENCE_KV_CACHE_USAGE, "_kv_cache_usage"),
                (Metrics.FACTORYLENS_INFERENCE_BATCH_SIZE, "_batch_size"),
            ),
            (Metrics.FACTORYLENS_INFERENCE_TELEMETRY_DROPPED, "_dropped"),
        )

    # ---- the engine's state (any thread) and its gauges (the reader's thread) --------------------
    def set_state(
        self, running: int, waiting: int, kv_cache_usage: float | None = None, batch_size: int | None = None
    ) -> None:
        """The engine's state now; the gauges report the last one set at each collection."""
        self._state = (running, waiting, kv_cache_usage, batch_size)

    def _state_value(self, index: int) -> list[Observation]:
        state = self._state
        value = None if state is None else state[index]
        return [] if value is None else [Observation(value, self.attributes)]

    def _running(self, options: CallbackOptions | None = None) -> list[Observation]:
        return self._state_value(0)

    def _waiting(self, options: CallbackOptions | None = None) -> list[Observation]:
        return self._state_value(1)

    def _kv_cache_usage(self, options: CallbackOptions | None = None) -> list[Observation]:
        return self._state_value(2)

    def _batch_size(self, options: CallbackOptions | None = None) -> list[Observation]:
        return self._state_value(3)

    def _dropped(self, options: CallbackOptions | None = None) -> list[Observation]:
        return [Observation(self.dropped)]

    # ---- the hot path (the server's threads) ------------------------------------------------------
    def submit(self, request: PendingRequest | RequestRecord) -> bool:
        """Queue a finished request for the background thread; False (and counted) when the queue is full."""
        pending = self.pending
        if len(pending) >= self.config.max_pending_requests:
            with self._drop_lock:
                self.dropped += 1
            return False
        pending.append(request)
        return True

    # ---- recording (the telemetry thread, or the caller's) ----------------------------------------
    def record(self, record: RequestRecord) -> None:
        self.record_many((record,))

    def record_many(self, records: Iterable[RequestRecord]) -> int:
        """Record finished requests; counters are added once per call (the same sums, fewer SDK calls)."""
        finished: dict[str, int] = {}
        input_tokens = output_tokens = preemptions = count = 0
        base = self.attributes
        for r in records:
            count += 1
            if r.error_type is None:
                self.duration.record((r.end_ns - r.arrival_ns) / 1e9, base)
            else:
                self.duration.record((r.end_ns - r.arrival_ns) / 1e9, self._error_attributes(r.error_type))
            if r.first_token_ns is not None:
                self.ttft.record((r.first_token_ns - r.arrival_ns) / 1e9, base)
                self.decode_time.record((r.end_ns - r.first_token_ns) / 1e9, base)
                if r.output_tokens >= 2:
                    self.tpot.record((r.end_ns - r.first_token_ns) / (r.output_tokens - 1) / 1e9, base)
            if r.scheduled_ns is not None:
                self.queue_time.record((r.scheduled_ns - r.arrival_ns) / 1e9, base)
                self.inference_time.record((r.end_ns - r.scheduled_ns) / 1e9, base)
                if r.first_token_ns is not None:
                    self.prefill_time.record((r.first_token_ns - r.scheduled_ns) / 1e9, base)
            self.token_usage.record(r.prompt_tokens, self._input)
            if r.output_tokens or r.finish_reason in COMPLETED:  # not a 0 for a request cut short
                self.token_usage.record(r.output_tokens, self._output)
            finished[r.finish_reason] = finished.get(r.finish_reason, 0) + 1
            input_tokens += r.prompt_tokens
            output_tokens += r.output_tokens
            preemptions += r.preemptions
        for reason, n in finished.items():
            self.finished.add(n, self._finished[reason])
        if input_tokens:
            self.tokens.add(input_tokens, self._input)
        if output_tokens:
            self.tokens.add(output_tokens, self._output)
        if preemptions:
            self.preemptions.add(preemptions, base)
        self.recorded += count
        return count

    def _error_attributes(self, error_type: str) -> dict[str, Any]:
        attributes = self._errors.get(error_type)
        if attributes is None:
            if len(self._errors) >= self.config.max_error_types:  # bounded: later new ones are _OTHER
                error_type = OTHER_ERROR
                attributes = self._errors.get(error_type)
            if attributes is None:
                attributes = self._errors[error_type] = {**self.attributes, Attributes.ERROR_TYPE: error_type}
        return attributes

    def drain(self) -> int:
        """Record every queued request now; returns how many were recorded."""
        with self._drain_lock:
            pending = self.pending
            records: list[RequestRecord] = []
            while pending:
                item = pending.popleft()
                if isinstance(item, RequestRecord):
                    records.append(item)
                    continue
                try:
                    records.append(RequestRecord(*item))
                except ValueError as exc:
                    self.invalid += 1
                    if self.invalid == 1:
                        log.warning("serving telemetry: a request was not recorded: %s", exc)
            return self.record_many(records)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="factorylens-serving-telemetry", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.config.flush_interval_s):
            try:
                self.drain()
            except Exception:
                log.exception("serving telemetry drain failed")

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop the background thread and record what is still queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.drain()
