"""The factory's dependency graph: which entity's trouble can become which other entity's trouble.

An edge ``src -> dst`` means *src depends on dst*: a slow callee slows its caller, a hot GPU slows
the rank computing on it, a starved host slows the ranks and services running on it. Relations:

- ``contains``: a job depends on its ranks (a synchronous job runs at its slowest rank's pace);
- ``uses``: a rank uses its GPUs (``hw.id``), its host's NICs and file systems, and (a synchronous
  job waits for its slowest member) every GPU its job runs on; a job its GPUs; a serving replica
  its GPUs and its host's devices (replicas answer on their own: none waits for another's GPU);
- ``runs_on``: ranks, GPUs, pods, services and per-host devices run on a host;
- ``calls``: service call edges from spans (a parent span in one service, its child in another).

:func:`topology_from_series` builds it from the join keys on resources and attributes
(ARCHITECTURE.md section 3); the span store adds call edges as traces arrive.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factorylens.registry import Attributes

RELATIONS = ("contains", "uses", "runs_on", "calls")
INFRASTRUCTURE_KINDS = frozenset({"host", "nic", "fs", "disk", "gpu"})
# servers whose saturation (requests queued, a full KV cache) is how a slower service rate shows: a
# dependency's trouble clears it even though it is saturated itself
QUEUEING_KINDS = frozenset({"replica"})


@dataclass
class Topology:
    edges: dict[tuple[str, str], str] = field(default_factory=dict)
    entities: set[str] = field(default_factory=set)

    def add_entity(self, entity: str) -> None:
        self.entities.add(entity)

    def add_edge(self, src: str, dst: str, relation: str) -> None:
        if relation not in RELATIONS:
            raise ValueError(f"unknown relation {relation!r}; expected one of {', '.join(RELATIONS)}")
        if src == dst:
            return
        self.entities.update((src, dst))
        self.edges[(src, dst)] = relation

    def merge(self, other: Topology) -> None:
        self.entities |= other.entities
        self.edges.update(other.edges)

    def dependencies(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for src, dst in self.edges:
            out.setdefault(src, set()).add(dst)
        return out

    def dependents(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for src, dst in self.edges:
            out.setdefault(dst, set()).add(src)
        return out

    def related(self, roots: Iterable[str], shared: Iterable[str] | None = None) -> dict[str, int]:
        """Entities whose trouble can reach ``roots``, with their distance in hops: everything the
        roots depend on, directly or not, plus the other tenants of the shared infrastructure found
        (a noisy neighbour on the same host, a job sharing a NIC); with ``shared``, only of those
        pieces of infrastructure (the ones in trouble: a busy neighbour on a healthy host harms no one).
        Tenants are workloads: the host's other devices (a GPU serving someone else) are not.
        """
        down, up = self.dependencies(), self.dependents()
        distance = _bfs(roots, down)
        allowed = None if shared is None else set(shared)
        for entity, hops in sorted(distance.items(), key=lambda item: item[1]):
            if kind_of(entity) not in INFRASTRUCTURE_KINDS or (allowed is not None and entity not in allowed):
                continue
            for tenant in up.get(entity, ()):
                if (
                    tenant not in distance
                    and kind_of(tenant) not in INFRASTRUCTURE_KINDS
                    and self.edges[(tenant, entity)] in ("runs_on", "uses")
                ):
                    distance[tenant] = hops + 1
        return distance

    def path(self, src: str, dst: str) -> list[str]:
        """A shortest chain of dependencies from ``src`` to ``dst`` ([] when there is none)."""
        down = self.dependencies()
        parent: dict[str, str | None] = {src: None}
        queue = deque([src])
        while queue:
            node = queue.popleft()
            if node == dst:
                chain = [node]
                while parent[chain[-1]] is not None:
                    chain.append(parent[chain[-1]])  # type: ignore[arg-type]
                return chain[::-1]
            for nxt in down.get(node, ()):
                if nxt not in parent:
                    parent[nxt] = node
                    queue.append(nxt)
        return []

    # ---- files ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "entities": sorted(self.entities),
            "edges": [{"src": s, "dst": d, "relation": r} for (s, d), r in sorted(self.edges.items())],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Topology:
        topology = cls()
        for entity in data.get("entities", ()):
            topology.add_entity(str(entity))
        for edge in data.get("edges", ()):
            try:
                topology.add_edge(str(edge["src"]), str(edge["dst"]), str(edge.get("relation", "calls")))
            except KeyError as exc:
                raise ValueError(f"a topology edge needs 'src' and 'dst': {edge!r}") from exc
        return topology

    @classmethod
    def load(cls, path: str | Path) -> Topology:
        """A topology file: JSON (``{"edges": [{"src", "dst", "relation"}]}``) or CSV with columns
        ``src,dst[,relation]`` (relation defaults to ``calls``)."""
        path = Path(path)
        text = path.read_text()
        if path.suffix.lower() == ".json":
            return cls.from_dict(json.loads(text))
        import pandas as pd

        table = pd.read_csv(path)
        missing = {"src", "dst"} - set(table.columns)
        if missing:
            raise ValueError(f"{path}: a topology CSV needs the columns src,dst[,relation]; missing {sorted(missing)}")
        relations = table["relation"] if "relation" in table.columns else ["calls"] * len(table)
        return cls.from_dict(
            {
                "edges": [
                    {"src": s, "dst": d, "relation": r}
                    for s, d, r in zip(table["src"], table["dst"], relations, strict=False)
                ]
            }
        )


def kind_of(entity: str) -> str:
    return entity.split(":", 1)[0] if ":" in entity else ""


def _bfs(roots: Iterable[str], neighbours: Mapping[str, Iterable[str]]) -> dict[str, int]:
    distance = {root: 0 for root in roots}
    queue = deque(distance)
    while queue:
        node = queue.popleft()
        for nxt in neighbours.get(node, ()):
            if nxt not in distance:
                distance[nxt] = distance[node] + 1
                queue.append(nxt)
    return distance


def topology_from_series(series: Iterable[tuple[str, Mapping[str, Any], Mapping[str, Any]]]) -> Topology:
    """Edges from the join keys of ``(entity, resource, attributes)`` triples, one per series."""
    topology = Topology()
    ranks_by_host: dict[str, set[str]] = {}
    devices_by_host: dict[str, set[str]] = {}
    ranks_by_job: dict[str, set[str]] = {}
    gpus_by_job: dict[str, set[str]] = {}
    for entity, resource, attributes in series:
        topology.add_entity(entity)
        merged = {**resource, **attributes}
        kind = kind_of(entity)
        host_name = merged.get(Attributes.HOST_NAME) or merged.get(Attributes.K8S_NODE_NAME)
        host = f"host:{host_name}" if host_name else ""
        job_id = merged.get(Attributes.FACTORYLENS_JOB_ID)
        if host and kind not in ("host", "job"):
            topology.add_edge(entity, host, "runs_on")
        if kind in ("rank", "replica"):
            if job_id:
                topology.add_edge(f"job:{job_id}", entity, "contains")
            for gpu in _gpu_ids(merged):
                topology.add_edge(entity, f"gpu:{gpu}", "uses")
            if host:
                ranks_by_host.setdefault(host, set()).add(entity)
            if job_id and kind == "rank":
                ranks_by_job.setdefault(str(job_id), set()).add(entity)
        elif kind == "gpu" and job_id:
            topology.add_edge(f"job:{job_id}", entity, "uses")
            gpus_by_job.setdefault(str(job_id), set()).add(entity)
        elif kind in ("nic", "fs", "disk") and host:
            devices_by_host.setdefault(host, set()).add(entity)
        elif kind == "job" and host:
            topology.add_edge(entity, host, "runs_on")
    for host, ranks in ranks_by_host.items():
        for rank in ranks:
            for device in devices_by_host.get(host, ()):
                topology.add_edge(rank, device, "uses")
    # a synchronous job's ranks wait for one another at every collective: each depends on all its GPUs
    for job, ranks in ranks_by_job.items():
        for rank in ranks:
            for gpu in gpus_by_job.get(job, ()):
                topology.add_edge(rank, gpu, "uses")
    return topology


def _gpu_ids(attributes: Mapping[str, Any]) -> list[str]:
    """The rank's GPUs: ``factorylens.gpu.ids`` (an OTLP array, stored as JSON text) and ``hw.id``."""
    ids = attributes.get(Attributes.FACTORYLENS_GPU_IDS) or []
    if isinstance(ids, str):
        try:
            ids = json.loads(ids) if ids.startswith("[") else [ids]
        except json.JSONDecodeError:
            ids = [ids]
    found = [str(i) for i in ids] if isinstance(ids, (list, tuple)) else []
    if attributes.get(Attributes.HW_ID):
        found.append(str(attributes[Attributes.HW_ID]))
    return list(dict.fromkeys(found))
