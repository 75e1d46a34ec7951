"""Job-affine routing for a sharded RCA service: what a host's job-less series need to reach every
replica that holds a job on that host (docs/scaling.md).

The collector gateway shards by job: its ``load_balancing`` exporter (``routing_key: attributes``,
``routing_attributes: [factorylens.job.id]``) hashes each job's series to one replica, looking for
the attribute on the resource, then the scope, then each data point. A rank's series carry the job
on their resource and a GPU's series carry it on their points (``enrich_metrics`` with
``gpu_jobs_from_processes``), but the series of the host itself (CPU, memory, swap, disks, file
systems, fabric ports, an unused GPU) carry none: they all hash to the one replica of the missing
key, and a job on any other replica never sees its own hosts' trouble.

:class:`HostFanOut`, run where the host's jobs are known (the node agent's export, before the
gateway), sends those series once per job running on the host: each copy holds the host's job-less
points under a scope that carries the job as a scope attribute. The gateway routes the copy with
the job; the RCA store ignores scope attributes, so on every replica the copy is the very series
one unsharded service would have stored, and two copies on one replica (two of the host's jobs
hash there) are the same points at the same times, which the store reads back once (gauges and
cumulative sums; a delta sum would count twice, and none of our agents send host-level deltas).

A scope attribute, not a resource or point attribute, because the store names a series by its
join keys and ``factorylens.job.id`` ranks above ``host.name`` there: a host's CPU series carrying
the job would become the job's series. It also means no ``groupbyattrs`` in front of
``load_balancing`` once copies flow: that processor merges scopes by name and version only, so the
copies of one host would fold into one scope with one job. The first copy is flagged ``primary``
so that a pipeline that must see each series once (Prometheus) can drop the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from factorylens.processors._enrich import (
    JOB,
    EnrichConfig,
    GpuJobIndex,
    enrich_metrics,
    string_attributes_of,
)
from factorylens.registry import Attributes

PRIMARY = "factorylens.route.primary"  # on the first copy only: the one a Prometheus pipeline keeps
HOST_KEYS = (Attributes.HOST_NAME, Attributes.K8S_NODE_NAME)
NS = 1_000_000_000


@dataclass
class FanOutStats:
    copies: int = 0  # ResourceMetrics added, one per (host resource, job)
    points_copied: int = 0  # job-less points in those copies, counted once per copy
    points_unrouted: int = 0  # job-less points of hosts with no job known: they go to one replica


class HostFanOut:
    """Copies each host's job-less metric points once per job running on that host (see the module).

    Which jobs run on a host is learned from the traffic itself: any resource or point that has both
    the host (``host.name`` or ``k8s.node.name`` on its resource) and a job, e.g. the receiver's
    ``process.gpu.*`` points or a training rank's resource. A job not seen on the host for
    ``forget_after_s`` (of the data's own time, so replays behave like live traffic) stops getting
    copies. At most ``max_hosts`` hosts are remembered, the longest silent forgotten first.

    The first copy of each resource also carries ``primary`` (a boolean scope attribute): a pipeline
    that must see every series once, such as the gateway's ``prometheusremotewrite``, keeps the
    scopes that have it or have no job and drops the other copies.
    """

    def __init__(
        self, key: str = JOB, *, primary: str = PRIMARY, forget_after_s: float = 300.0, max_hosts: int = 100_000
    ) -> None:
        if forget_after_s <= 0 or max_hosts < 1:
            raise ValueError("forget_after_s must be positive and max_hosts at least 1")
        self.key = key
        self.primary = primary
        self._forget_ns = int(forget_after_s * NS)
        self._max_hosts = max_hosts
        self._seen: dict[str, dict[str, int]] = {}  # host -> job -> last time_unix_nano seen there
        self._now_ns = 0  # the newest point time seen: the data's own clock

    def jobs_on(self, host: str) -> tuple[str, ...]:
        """The jobs seen on ``host`` within ``forget_after_s`` of the newest data seen (from any host),
        sorted (so copies come out in a stable order)."""
        jobs = self._seen.get(host)
        if not jobs:
            return ()
        return tuple(sorted(job for job, ts in jobs.items() if ts >= self._now_ns - self._forget_ns))

    def learn(self, request: Any) -> None:
        """Note the (host, job) pairs of an ``ExportMetricsServiceRequest``."""
        found: dict[str, dict[str, int]] = {}
        for rm in request.resource_metrics:
            resource = string_attributes_of(rm.resource.attributes)
            host = _host(resource)
            if not host:
                continue
            resource_job = resource.get(self.key, "")
            latest = found.setdefault(host, {})
            for point in _points(rm):
                self._now_ns = max(self._now_ns, point.time_unix_nano)
                job = resource_job or _string(point.attributes, self.key)
                if job and point.time_unix_nano > latest.get(job, -1):
                    latest[job] = point.time_unix_nano
        for host, jobs in found.items():
            if jobs:
                self._note(host, jobs)

    def metrics(self, request: Any) -> FanOutStats:
        """Learn from ``request``, then move each host resource's job-less points into one copy per job
        on that host (in place; the copies are appended to ``request.resource_metrics``)."""
        self.learn(request)
        stats = FanOutStats()
        key = self.key
        copies = []
        emptied = []
        for index, rm in enumerate(request.resource_metrics):
            resource = string_attributes_of(rm.resource.attributes)
            host = _host(resource)
            if not host or resource.get(key):
                continue  # a job's resource, or nobody's host: routed as it is
            jobless = sum(1 for point in _points(rm) if not _has(point.attributes, key))
            if not jobless:
                continue
            jobs = self.jobs_on(host)
            if not jobs:
                stats.points_unrouted += jobless
                continue
            template = type(rm)()
            template.CopyFrom(rm)
            _keep(template, lambda attributes: not _has(attributes, key))
            _keep(rm, lambda attributes: _has(attributes, key))
            if not rm.scope_metrics:
                emptied.append(index)
            for n, job in enumerate(jobs):
                copy = type(rm)()
                copy.CopyFrom(template)
                for sm in copy.scope_metrics:
                    sm.scope.attributes.add(key=key).value.string_value = job
                    if n == 0:
                        sm.scope.attributes.add(key=self.primary).value.bool_value = True
                copies.append(copy)
                stats.copies += 1
                stats.points_copied += jobless
        for index in reversed(emptied):
            del request.resource_metrics[index]
        request.resource_metrics.extend(copies)
        return stats

    def _note(self, host: str, latest: dict[str, int]) -> None:
        jobs = self._seen.pop(host, None) or {}
        self._seen[host] = jobs  # the most recently seen host last
        for job, ts in latest.items():
            if ts > jobs.get(job, -1):
                jobs[job] = ts
        for job in [j for j, ts in jobs.items() if ts < self._now_ns - self._forget_ns]:
            del jobs[job]  # ended: forgotten, so a long-lived agent's memory stays bounded
        while len(self._seen) > self._max_hosts:
            del self._seen[next(iter(self._seen))]


def _host(resource: dict[str, str]) -> str:
    return next((resource[k] for k in HOST_KEYS if resource.get(k)), "")


def _points(rm: Any) -> Iterable[Any]:
    for sm in rm.scope_metrics:
        for metric in sm.metrics:
            kind = metric.WhichOneof("data")
            if kind is not None:
                yield from getattr(metric, kind).data_points


def _keep(rm: Any, wanted: Callable[[Any], bool]) -> None:
    """Keep the points whose attributes are ``wanted``; drop metrics and scopes left empty."""
    for sm in rm.scope_metrics:
        for metric in sm.metrics:
            kind = metric.WhichOneof("data")
            if kind is None:
                continue
            points = getattr(metric, kind).data_points
            for i in reversed([i for i, point in enumerate(points) if not wanted(point.attributes)]):
                del points[i]
        for i in reversed([i for i, m in enumerate(sm.metrics) if _empty(m)]):
            del sm.metrics[i]
    for i in reversed([i for i, sm in enumerate(rm.scope_metrics) if not sm.metrics]):
        del rm.scope_metrics[i]


def _empty(metric: Any) -> bool:
    kind = metric.WhichOneof("data")
    return kind is not None and not getattr(metric, kind).data_points


def _has(attributes: Any, key: str) -> bool:
    return any(kv.key == key for kv in attributes)


def _string(attributes: Any, key: str) -> str:
    return next((kv.value.string_value for kv in attributes if kv.key == key), "")


class JobSharding:
    """What a node agent does to its own export when the collector gateway shards the RCA service by
    job: each GPU's series get the job of the process on it (``enrich_metrics`` with
    ``gpu_jobs_from_processes``), and the host's job-less series go once per job on the host
    (:class:`HostFanOut`). ``factorylens gpu --shard-by-job`` runs it on every OTLP export."""

    def __init__(self) -> None:
        self.enrich = EnrichConfig(gpu_jobs_from_processes=True)
        self.index = GpuJobIndex(self.enrich.max_gpus)
        self.fan_out = HostFanOut()

    def process(self, request: Any) -> FanOutStats:
        enrich_metrics(request, self.enrich, self.index)
        return self.fan_out.metrics(request)
