"""Who this serving process is, and how its telemetry is bounded; defaults from the environment.

``OTEL_SERVICE_NAME`` (the service), ``FACTORYLENS_SERVING_MODEL`` (``gen_ai.request.model``),
``FACTORYLENS_SERVING_PROVIDER`` (``gen_ai.provider.name``: the engine, e.g. ``vllm`` or the team's
own server's name), ``FACTORYLENS_SERVING_OPERATION`` (``gen_ai.operation.name``),
``FACTORYLENS_SERVING_ADDRESS`` / ``FACTORYLENS_SERVING_PORT`` (``server.address`` / ``server.port``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from factorylens.instrumentation._config import ConfigError, _env, _env_int

DEFAULT_SERVICE_NAME = "factorylens-serving"


@dataclass
class ServingConfig:
    """
    :param service_name: ``service.name`` of the resource (``OTEL_SERVICE_NAME`` wins)
    :param model: the served model (``gen_ai.request.model`` on every point; empty: left out)
    :param provider: the serving engine (``gen_ai.provider.name``, required by the conventions)
    :param operation: what requests ask for (``gen_ai.operation.name``: chat, text_completion, ...)
    :param server_address, server_port: the endpoint (``server.address``/``server.port``; empty/0: left out)
    :param job_id: the served model's deployment (``factorylens.job.id``: its replicas' incidents are one
        workload's; default the service name)
    :param team: team or cost centre
    :param replica: which replica of the deployment this process is (``factorylens.inference.replica``:
        the RCA service's entity ``replica:<job>/<replica>``; default the host and port)
    :param gpu_ids: hw.id (UUID) of every GPU this server uses, which joins it to them
    :param host: ``host.name`` of the resource
    :param flush_interval_s: how often the background thread turns finished requests into telemetry
    :param max_pending_requests: finished requests waiting for that thread; beyond it they are
        dropped and counted (``factorylens.inference.telemetry.dropped``), the server never waits
    :param max_error_types: distinct ``error.type`` values kept; later new ones become ``_OTHER``
    :param export_interval_s: metric export interval (``OTEL_METRIC_EXPORT_INTERVAL`` wins)
    """

    service_name: str = field(default_factory=lambda: _env("OTEL_SERVICE_NAME", default=DEFAULT_SERVICE_NAME))
    model: str = field(default_factory=lambda: _env("FACTORYLENS_SERVING_MODEL"))
    provider: str = field(default_factory=lambda: _env("FACTORYLENS_SERVING_PROVIDER", default="custom"))
    operation: str = field(default_factory=lambda: _env("FACTORYLENS_SERVING_OPERATION", default="chat"))
    server_address: str = field(default_factory=lambda: _env("FACTORYLENS_SERVING_ADDRESS"))
    server_port: int = field(default_factory=lambda: _env_int("FACTORYLENS_SERVING_PORT", default=0))
    job_id: str = field(default_factory=lambda: _env("FACTORYLENS_JOB_ID"))
    team: str = field(default_factory=lambda: _env("FACTORYLENS_TEAM"))
    replica: str = field(default_factory=lambda: _env("FACTORYLENS_SERVING_REPLICA"))
    gpu_ids: tuple[str, ...] = field(
        default_factory=lambda: tuple(g.strip() for g in _env("FACTORYLENS_GPU_IDS").split(",") if g.strip())
    )
    host: str = field(default_factory=socket.gethostname)
    flush_interval_s: float = 1.0
    max_pending_requests: int = 100_000
    max_error_types: int = 64
    export_interval_s: float = 10.0

    def validate(self) -> None:
        for name in ("service_name", "provider", "operation"):
            if not getattr(self, name):
                raise ConfigError(f"{name} must not be empty")
        if not 0 <= self.server_port <= 65_535:
            raise ConfigError(f"server_port {self.server_port} is not a TCP port (1-65535, or 0 for none)")
        for name in ("flush_interval_s", "export_interval_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.max_pending_requests < 1 or self.max_error_types < 1:
            raise ConfigError("max_pending_requests and max_error_types must be at least 1")
