"""Who this training process is, and how its telemetry is sampled; defaults from the environment.

Identity comes from the launcher's variables (torchrun/torchelastic, Slurm) unless given:
``FACTORYLENS_JOB_ID`` (else ``SLURM_JOB_ID``, ``TORCHELASTIC_RUN_ID``), ``FACTORYLENS_TEAM``,
``RANK``/``SLURM_PROCID``, ``WORLD_SIZE``/``SLURM_NTASKS``, ``LOCAL_RANK``/``SLURM_LOCALID``, and
``FACTORYLENS_GPU_IDS`` (comma-separated GPU UUIDs, else discovered through NVML).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field


class ConfigError(ValueError):
    pass


def _env(*names: str, default: str = "") -> str:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default


def _env_int(*names: str, default: int) -> int:
    raw = _env(*names)
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{names[0]}={raw!r} is not an integer") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


@dataclass
class TrainingConfig:
    """
    :param job_id: the job, the key that joins this process's signals to its GPUs' and hosts'
    :param team: team or cost centre
    :param rank, world_size, local_rank: the process's place in the job
    :param gpu_ids: hw.id (UUID) of every GPU this rank uses; discovered through NVML when empty
    :param gpu_name: GPU product name (for the MFU peak); discovered through NVML when empty
    :param model_flops_per_sample: training FLOPs per sample (e.g. 6 × parameters × tokens per sample
        for a transformer); 0 turns MFU off
    :param peak_flops: peak FLOPS of the rank's GPUs; 0 = from ``gpu_name`` (factorylens.gpus)
    :param span_every_steps: a full span tree every N steps (0: only slow and failed steps)
    :param slow_step_factor: a step slower than this × the running median also gets a span tree
    :param flush_interval_s: how often the background thread turns finished steps into telemetry
    :param max_pending_steps: finished steps waiting for that thread; beyond it they are dropped (counted)
    :param state_dir: where goodput's progress is kept across restarts (empty: not kept)
    :param export_interval_s: metric export interval (``OTEL_METRIC_EXPORT_INTERVAL`` wins)
    """

    job_id: str = field(
        default_factory=lambda: _env("FACTORYLENS_JOB_ID", "SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", default="local")
    )
    team: str = field(default_factory=lambda: _env("FACTORYLENS_TEAM"))
    rank: int = field(default_factory=lambda: _env_int("RANK", "SLURM_PROCID", default=0))
    world_size: int = field(default_factory=lambda: _env_int("WORLD_SIZE", "SLURM_NTASKS", default=1))
    local_rank: int = field(default_factory=lambda: _env_int("LOCAL_RANK", "SLURM_LOCALID", default=0))
    host: str = field(default_factory=socket.gethostname)
    gpu_ids: tuple[str, ...] = field(
        default_factory=lambda: tuple(g.strip() for g in _env("FACTORYLENS_GPU_IDS").split(",") if g.strip())
    )
    gpu_name: str = field(default_factory=lambda: _env("FACTORYLENS_GPU_NAME"))
    model_flops_per_sample: float = field(default_factory=lambda: _env_float("FACTORYLENS_MODEL_FLOPS_PER_SAMPLE", 0.0))
    peak_flops: float = 0.0
    span_every_steps: int = field(default_factory=lambda: _env_int("FACTORYLENS_SPAN_EVERY_STEPS", default=100))
    slow_step_factor: float = 1.5
    flush_interval_s: float = 1.0
    max_pending_steps: int = 10_000
    state_dir: str = field(default_factory=lambda: _env("FACTORYLENS_STATE_DIR"))
    export_interval_s: float = 10.0

    def validate(self) -> None:
        if not self.job_id:
            raise ConfigError("job_id must not be empty")
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank {self.rank} is not within world_size {self.world_size}")
        for name in ("flush_interval_s", "export_interval_s", "slow_step_factor"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.max_pending_steps < 1 or self.span_every_steps < 0:
            raise ConfigError("max_pending_steps must be at least 1 and span_every_steps not negative")
        if self.model_flops_per_sample < 0 or self.peak_flops < 0:
            raise ConfigError("model_flops_per_sample and peak_flops must not be negative")
