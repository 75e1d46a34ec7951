"""RCA service: OTLP gRPC ingest, durable store, baselines, detection and root-cause ranking.

``factorylens rca serve`` runs :class:`RcaService`; see docs/rca-service.md. The configuration loads
without the ``rca`` extra (the CLI's client commands need only it); the service itself is imported on
first use.
"""

from typing import Any

from factorylens.rca_service.config import ConfigError, RcaServiceConfig


def __getattr__(name: str) -> Any:
    if name not in ("RcaService", "ServiceError"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from factorylens._extras import require

    require("rca", "the RCA service")
    from factorylens.rca_service import service

    return getattr(service, name)


__all__ = ["ConfigError", "RcaService", "RcaServiceConfig", "ServiceError"]
