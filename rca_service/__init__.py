"""RCA service: OTLP gRPC ingest, durable store, baselines, detection and root-cause ranking.

``factorylens rca serve`` runs :class:`RcaService`; see ARCHITECTURE.md section 4.
"""

from factorylens.rca_service.config import ConfigError, RcaServiceConfig
from factorylens.rca_service.service import RcaService, ServiceError

__all__ = ["ConfigError", "RcaService", "RcaServiceConfig", "ServiceError"]
