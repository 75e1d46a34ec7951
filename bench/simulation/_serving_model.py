"""An LLM inference server on a simulated GPU, stepped in simulated time: the serving suite's model.

One replica serves one model on one GPU the way vLLM's engine does (Orca's continuous batching,
PagedAttention's KV cache; ``../shared/research/inference-serving.md``):

- every engine iteration decodes one token for each running request; its time is the weights plus
  the running requests' KV cache read from HBM (decode is memory-bound), over the GPU's speed;
- a new request's prompt is prefilled in the iterations (compute-bound: 2 × parameters FLOPs per
  token), which takes that share of the engine's time from decoding;
- at most ``max_num_seqs`` requests run, and only as many as their tokens fit the KV cache; the rest
  wait in the queue. When the running requests' contexts outgrow the cache, some are preempted
  (their KV blocks freed, their prefill redone later), and with the cache full every decoded token
  needs a block that a running request gives up;
- the engine's state (requests running and waiting, KV-cache usage) evolves as a fluid over
  one-second sub-steps; each finished request is then drawn from it, with its own prompt and output
  lengths: time in the queue (Little's law over the current queue), prefill, first token, time per
  output token, end. A replica whose GPU is gone fails what is routed to it; a replica loading its
  weights after a restart accepts requests and holds them until it is ready.

Nothing here sleeps or touches the network: a replica's ten seconds cost microseconds plus its
requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NS = 1_000_000_000


@dataclass(frozen=True)
class ServedModel:
    """A served model and the engine's settings: an 8B model in bf16 (Llama 3.1 8B's shape: GQA with
    8 KV heads of 128 over 32 layers, 128 KiB of KV per token), vLLM's defaults but a latency-tuned
    batch limit, on an H100's HBM (3.35 TB/s, 70 % of it reached) and bf16 tensor cores (989 TFLOPS
    dense, 45 % reached in prefill)."""

    name: str = "meta-llama/Llama-3.1-8B-Instruct"
    parameters: float = 8.0e9
    weight_bytes: float = 16.0e9
    kv_bytes_per_token: float = 131_072.0
    kv_cache_tokens: float = 180_000.0  # --gpu-memory-utilization 0.5: 24 GB of blocks
    max_num_seqs: int = 32
    hbm_bytes_per_s: float = 3.35e12 * 0.7
    flops: float = 989e12 * 0.45
    iteration_overhead_s: float = 0.003  # scheduling, sampling, detokenizing per iteration
    weight_load_s: float = 20.0  # engine start besides reading the weights (CUDA graphs, warm-up)

    def __post_init__(self) -> None:
        numbers = (self.parameters, self.weight_bytes, self.kv_bytes_per_token, self.kv_cache_tokens)
        speeds = (self.hbm_bytes_per_s, self.flops)
        if (
            min(*numbers, *speeds) <= 0
            or self.max_num_seqs < 1
            or min(self.iteration_overhead_s, self.weight_load_s) < 0
        ):
            raise ValueError(f"a served model needs positive sizes, speeds and batch limit: {self}")

    @property
    def prefill_s_per_token(self) -> float:
        return 2.0 * self.parameters / self.flops


@dataclass(frozen=True)
class Traffic:
    """What clients send: requests per second per replica at the daily peak, and the lengths of
    prompts and outputs (log-normal around their means)."""

    peak_rps: float = 3.0
    prompt_tokens: float = 1000.0
    output_tokens: float = 300.0
    length_sigma: float = 0.6
    trough_share: float = 0.1  # the night's load as a share of the peak
    peak_hour: float = 15.0  # UTC

    def __post_init__(self) -> None:
        if self.peak_rps < 0 or min(self.prompt_tokens, self.output_tokens) < 1 or self.length_sigma < 0:
            raise ValueError(f"traffic needs a rate >= 0, prompts and outputs of a token or more: {self}")
        if not 0 <= self.trough_share <= 1:
            raise ValueError(f"trough_share is a share of the peak, in [0, 1], not {self.trough_share}")

    def diurnal(self, epoch_s: float) -> float:
        """The share of the peak load at this time of day (a cosine from the night's trough)."""
        hour = (epoch_s % 86400.0) / 3600.0
        wave = 0.5 + 0.5 * math.cos((hour - self.peak_hour) / 24.0 * 2 * math.pi)
        return self.trough_share + (1.0 - self.trough_share) * wave


@dataclass(frozen=True)
class ServedRequest:
    """One finished request, in simulated seconds from the run's start (None: never reached)."""

    arrival_s: float
    scheduled_s: float | None
    first_token_s: float | None
    end_s: float
    prompt_tokens: int
    output_tokens: int
    preemptions: int = 0
    error_type: str | None = None


@dataclass
class EngineState:
    """What a replica reports at a scrape (its gauges)."""

    running: float = 0.0
    waiting: float = 0.0
    kv_cache_usage: float = 0.0
    utilization: float = 0.0  # the GPU's busy share this replica asks for


@dataclass
class Replica:
    """One inference server process on one GPU.

    ``step(t0, t1, rps, prompt_scale, speed)`` advances it over ``[t0, t1)`` with ``rps`` requests per
    second routed to it, prompts ``prompt_scale`` × their usual length, at ``speed`` × its healthy
    pace (clocks, a time-sliced neighbour), and returns the requests that finished.
    """

    index: int
    model: ServedModel
    traffic: Traffic
    rng: np.random.Generator
    in_system: float = 0.0  # requests running or waiting (a fluid)
    running: float = 0.0
    preempted_carry: float = 0.0
    lost: bool = False
    ready_at_s: float = 0.0  # a restarting replica serves from this simulated second
    state: EngineState = field(default_factory=EngineState)

    def restart(self, now_s: float, load_s: float) -> None:
        """The process restarts now and serves again after ``load_s`` (weights and warm-up); the
        requests it held are lost with it, new ones wait for it."""
        self.in_system = self.running = 0.0
        self.ready_at_s = now_s + load_s

    def loading(self, t_s: float) -> bool:
        return t_s < self.ready_at_s

    def iteration_s(self, running: float, context: float, speed: float) -> float:
        m = self.model
        read = m.weight_bytes + running * context * m.kv_bytes_per_token
        return (read / m.hbm_bytes_per_s + m.iteration_overhead_s) / max(speed, 1e-3)

    def step(
        self, t0: float, t1: float, rps: float, prompt_scale: float, speed: float, substep_s: float = 1.0
    ) -> list[ServedRequest]:
        m, tr = self.model, self.traffic
        prompt = tr.prompt_tokens * prompt_scale
        context = prompt + tr.output_tokens / 2.0  # a running request's tokens on average
        if self.lost:
            self.in_system = self.running = 0.0
            self.state = EngineState()
            return self._failed(t0, t1, rps, prompt, "EngineDeadError")
        finished: list[ServedRequest] = []
        running_time = waiting_time = kv_time = busy_time = 0.0
        completions = preemptions = 0.0
        t = t0
        while t < t1 - 1e-9:
            dt = min(substep_s, t1 - t)
            if self.loading(t):
                self.in_system += rps * dt  # accepted, held until the engine is up
                running, waiting, kv, busy = 0.0, self.in_system, 0.0, 0.02
                done = 0.0
            else:
                fits = m.kv_cache_tokens / context
                limit = min(float(m.max_num_seqs), fits)
                if self.running > limit:  # contexts outgrew the cache: free the newest requests' blocks
                    preemptions += self.running - limit
                running = min(self.in_system, limit)
                waiting = self.in_system - running
                prefill_share = min(0.95, rps * prompt * m.prefill_s_per_token / max(speed, 1e-3))
                decode_s = self.iteration_s(running, context, speed) / (1.0 - prefill_share)
                done = min(self.in_system, running / (tr.output_tokens * decode_s) * dt)
                if running >= fits - 1e-9:  # a full cache: each new token's block evicts a running request's
                    preemptions += running / decode_s / context * dt
                self.in_system += rps * dt - done
                kv = running * context / m.kv_cache_tokens
                busy = prefill_share + (1.0 - prefill_share) * (1.0 - math.exp(-running / 2.0))
            self.running = running
            completions += done
            running_time += running * dt
            waiting_time += waiting * dt
            kv_time += kv * dt
            busy_time += busy * dt
            t += dt
        span = max(t1 - t0, 1e-9)
        self.state = EngineState(running_time / span, waiting_time / span, min(1.0, kv_time / span), busy_time / span)
        self.preempted_carry += preemptions
        if not self.loading(t1):
            finished = self._served(t0, t1, rps, prompt, context, speed, completions)
        return finished

    def _lengths(self, n: int, mean: float) -> np.ndarray:
        sigma = self.traffic.length_sigma
        return np.maximum(1, np.round(mean * self.rng.lognormal(-sigma * sigma / 2, sigma, n))).astype(int)

    def _served(
        self, t0: float, t1: float, rps: float, prompt: float, context: float, speed: float, completions: float
    ) -> list[ServedRequest]:
        m, tr = self.model, self.traffic
        n = int(self.rng.poisson(max(completions, 0.0)))
        if n == 0:
            return []
        prompts = self._lengths(n, prompt)
        outputs = self._lengths(n, tr.output_tokens)
        ends = np.sort(self.rng.uniform(t0, t1, n))
        state = self.state
        # Little's law over the current queue, at the rate it moves: arrivals, or completions while a
        # backlog drains after the arrivals stopped (the arrival rate alone makes that wait endless)
        queue_mean = state.waiting / max(rps, n / max(t1 - t0, 1e-9))
        if self.ready_at_s > t0 - 60.0:  # requests held while the engine loaded were queued until it was up
            held = max(0.0, self.ready_at_s - t0)
            queue_mean = max(queue_mean, held / 2.0)
        queue = self.rng.exponential(max(queue_mean, 1e-4), n)
        prefill_share = min(0.95, rps * prompt * m.prefill_s_per_token / max(speed, 1e-3))
        decode_s = self.iteration_s(state.running, context, speed) / (1.0 - prefill_share)
        tpot = decode_s * self.rng.lognormal(0.0, 0.06, n)
        prefill = prompts * m.prefill_s_per_token / max(speed, 1e-3) + decode_s * self.rng.lognormal(0.0, 0.1, n)
        preempted = self.rng.poisson(self.preempted_carry / n, n) if self.preempted_carry > 0 else np.zeros(n, int)
        self.preempted_carry = 0.0
        redo = preempted * prompts * m.prefill_s_per_token / max(speed, 1e-3)  # recomputed prefills
        decode = (outputs - 1) * tpot + redo
        starts = ends - decode - prefill - queue
        return [
            ServedRequest(
                float(starts[i]),
                float(starts[i] + queue[i]),
                float(starts[i] + queue[i] + prefill[i]),
                float(ends[i]),
                int(prompts[i]),
                int(outputs[i]),
                int(preempted[i]),
            )
            for i in range(n)
        ]

    def _failed(self, t0: float, t1: float, rps: float, prompt: float, error: str) -> list[ServedRequest]:
        n = int(self.rng.poisson(max(rps * (t1 - t0), 0.0)))
        prompts = self._lengths(n, prompt)
        ends = np.sort(self.rng.uniform(t0, t1, n))
        return [
            ServedRequest(float(e) - 0.002, None, None, float(e), int(p), 0, 0, error)
            for e, p in zip(ends, prompts, strict=True)
        ]
