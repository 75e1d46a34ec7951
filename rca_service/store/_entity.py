"""Where a series sits in the factory: its domain (gpu, host, data, storage, network, app, ...) and
the entity it describes (a GPU, a NIC, a filesystem, a job rank, a service, a host).

Metrics in the registry take their domain from it; other names (hostmetrics, dcgm-exporter after
normalization, user metrics) are classified by well-known prefixes. The entity uses the join keys of
ARCHITECTURE.md section 3, most specific first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from factorylens.registry import INFERENCE_ENGINES, REGISTRY, Attributes, Domain, Registry

_PREFIX_DOMAINS = (
    ("hw.gpu.", Domain.GPU),
    ("process.gpu.", Domain.GPU),
    ("gpu.", Domain.GPU),
    ("dcgm_", Domain.GPU),
    ("hw.network.", Domain.NETWORK),
    ("system.network.", Domain.NETWORK),
    ("network.", Domain.NETWORK),
    ("rpc.", Domain.NETWORK),
    ("factorylens.collective.", Domain.NETWORK),
    ("nccl.", Domain.NETWORK),
    ("system.disk.", Domain.STORAGE),
    ("system.filesystem.", Domain.STORAGE),
    ("storage.", Domain.STORAGE),
    ("disk.", Domain.STORAGE),
    ("nfs.", Domain.STORAGE),
    ("lustre.", Domain.STORAGE),
    ("factorylens.checkpoint.", Domain.STORAGE),
    ("factorylens.storage.", Domain.STORAGE),
    ("factorylens.network.", Domain.NETWORK),
    ("factorylens.data.", Domain.DATA),
    ("dataloader.", Domain.DATA),
    ("system.cpu.", Domain.HOST),
    ("system.memory.", Domain.HOST),
    ("system.paging.", Domain.HOST),
    ("system.", Domain.HOST),
    ("process.", Domain.HOST),
    ("factorylens.cost.", Domain.COST),
    ("factorylens.receiver.", Domain.SELF),
    ("factorylens.rca.", Domain.SELF),
    ("otelcol_", Domain.SELF),
)

# most specific first: (attribute, entity kind)
_ENTITY_KEYS = (
    (Attributes.FACTORYLENS_ENTITY, ""),  # given verbatim (a replayed table's entity column)
    (Attributes.FACTORYLENS_RANK, "rank"),  # a training process: its GPUs (hw.id on its resource) are related entities
    (Attributes.FACTORYLENS_INFERENCE_REPLICA, "replica"),  # a serving process of a model: likewise its GPUs
    (Attributes.NETWORK_INTERFACE_NAME, "nic"),  # a fabric port (its hw.id is the port's GUID)
    (Attributes.HW_ID, "gpu"),
    ("hw.network.port", "nic"),
    (Attributes.SYSTEM_FILESYSTEM_MOUNTPOINT, "fs"),
    ("system.device", "disk"),
    (Attributes.FACTORYLENS_JOB_ID, "job"),
    (Attributes.K8S_POD_NAME, "pod"),
    (Attributes.SERVICE_NAME, "service"),
    (Attributes.HOST_NAME, "host"),
)
_HOST_SCOPED = {"nic", "fs", "disk"}
SERVICE_INSTANCE_ID = "service.instance.id"  # OTel resource semconv; the prometheus receiver sets host:port
# attributes that say *which* thing a series is about (shown as its entity), not *what* is measured
IDENTITY_ATTRIBUTES = (
    frozenset(REGISTRY.attribute_groups["gpu"])
    | {Attributes.HW_MODEL, Attributes.HW_SERIAL_NUMBER, Attributes.HW_DRIVER_VERSION, Attributes.HW_FIRMWARE_VERSION}
    # a server's endpoint and engine say which server it is, not what it measures
    | {
        Attributes.SERVER_ADDRESS,
        Attributes.SERVER_PORT,
        Attributes.GEN_AI_PROVIDER_NAME,
        Attributes.GEN_AI_OPERATION_NAME,
    }
    | {k for k, _ in _ENTITY_KEYS}
)


def domain_of(metric: str, registry: Registry = REGISTRY) -> Domain:
    try:
        return registry.metric(metric).domain
    except KeyError:
        pass
    for prefix, domain in _PREFIX_DOMAINS:
        if metric.startswith(prefix):
            return domain
    return Domain.APP


def entity_of(resource: Mapping[str, Any], attributes: Mapping[str, Any]) -> str:
    """``kind:name`` of the most specific thing the point is about, e.g. ``gpu:GPU-1f2e…``."""
    merged = {**resource, **attributes}
    host = merged.get(Attributes.HOST_NAME) or merged.get(Attributes.K8S_NODE_NAME)
    if not merged.get(Attributes.FACTORYLENS_INFERENCE_REPLICA):
        replica = _scraped_replica(merged)
        if replica:
            merged[Attributes.FACTORYLENS_INFERENCE_REPLICA] = replica
    for key, kind in _ENTITY_KEYS:
        value = merged.get(key)
        if value in (None, ""):
            continue
        if kind == "service" and str(value).startswith(("unknown_service", "factorylens-")):
            continue  # no real service: the SDK's default, or one of our agents reporting its node
        if not kind:
            return str(value)
        if kind in _HOST_SCOPED and host:
            return f"{kind}:{host}/{value}"
        if kind in ("rank", "replica"):
            owner = merged.get(Attributes.FACTORYLENS_JOB_ID) or merged.get(Attributes.SERVICE_NAME) or "?"
            return f"{kind}:{owner}/{value}"
        return f"{kind}:{value}"
    return "unknown"


def _scraped_replica(merged: Mapping[str, Any]) -> str:
    """A scraped serving engine (vLLM, SGLang, TGI, Triton) names no replica; its scrape target does: the
    prometheus receiver's ``server.address``/``server.port`` or, for a loopback target, ``service.instance.id``
    (``host:port``). Each engine process is then its own entity, as an instrumented replica is."""
    if merged.get(Attributes.GEN_AI_PROVIDER_NAME) not in INFERENCE_ENGINES:
        return ""
    address, port = merged.get(Attributes.SERVER_ADDRESS), merged.get(Attributes.SERVER_PORT)
    if address:
        return f"{address}:{port}" if port else str(address)
    return str(merged.get(SERVICE_INSTANCE_ID) or "")
