"""Who a GPU works for: job and team on GPU series, from the receiver's process attribution,
Kubernetes pod labels or a mapping file (ARCHITECTURE.md section 3, the cross-domain join keys).

The RCA service's topology joins a job to its GPUs through these keys; a sharded deployment routes
each job's series to one replica by them. Pod labels are read through an allow-list, so a cluster's
labels never multiply the series count.
"""

from __future__ import annotations

import collections
import fnmatch
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.metrics.v1 import metrics_pb2

from factorylens.processors._normalize import MAX_CACHED_IDENTITY_BYTES, point_identity
from factorylens.registry import Attributes

JOB = Attributes.FACTORYLENS_JOB_ID
TEAM = Attributes.FACTORYLENS_TEAM
POD_LABEL_PREFIX = "k8s.pod.labels."  # how the collector's k8sattributes names extracted pod labels
DEFAULT_JOB_LABELS = (
    Attributes.FACTORYLENS_JOB_ID,
    "batch.kubernetes.io/job-name",
    "job-name",
    "training.kubeflow.org/job-name",
    "app.kubernetes.io/instance",
)
DEFAULT_TEAM_LABELS = (Attributes.FACTORYLENS_TEAM, "team")
GPU_METRIC_PREFIXES = ("hw.", "process.gpu.", "factorylens.gpu.")  # the series a GPU's job is stamped on (usage too)
MAX_CACHED_DECISIONS = 20_000
MAX_CACHED_RESOURCES = 64  # (resource job, index version) pairs with a decision cache


@dataclass(frozen=True)
class Assignment:
    job: str = ""
    team: str = ""


@dataclass(frozen=True)
class EnrichConfig:
    """Where jobs and teams come from, most specific first: a GPU's static assignment (``gpus``:
    ``hw.id`` → job/team, e.g. a Slurm partition), its pod (``pods``: ``namespace/pod``, or the
    pod's labels named in ``job_labels``/``team_labels``), the process using it (with
    ``gpu_jobs_from_processes``), then the team of a job (``teams``: job-id glob → team) or of a
    namespace (``namespaces``).

    ``gpu_jobs_from_processes`` stamps a GPU's device series with the job of the process on it; a
    GPU's series then split when its job changes, so it is off unless routing by job needs it (the
    collector gateway's ``load_balancing``). ``allowed_pod_labels``: the pod labels (as
    ``k8s.pod.labels.<name>`` resource attributes) kept; the others are dropped.
    """

    gpus: Mapping[str, Assignment] = field(default_factory=dict)
    pods: Mapping[str, Assignment] = field(default_factory=dict)
    teams: tuple[tuple[str, str], ...] = ()
    namespaces: Mapping[str, str] = field(default_factory=dict)
    job_labels: tuple[str, ...] = DEFAULT_JOB_LABELS
    team_labels: tuple[str, ...] = DEFAULT_TEAM_LABELS
    allowed_pod_labels: frozenset[str] = frozenset(DEFAULT_JOB_LABELS + DEFAULT_TEAM_LABELS)
    gpu_jobs_from_processes: bool = False
    max_gpus: int = 100_000

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> EnrichConfig:
        """A YAML mapping file::

        gpus: {GPU-1f2e...: {job: llm-pretrain, team: foundation}}
        pods: {ml/trainer-0: {job: llm-pretrain}}
        teams: {"llm-*": foundation}
        namespaces: {ml: foundation}
        allowed_pod_labels: [team, job-name]
        """
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read the enrichment mapping {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping with gpus/pods/teams/namespaces, got {type(data).__name__}")
        unknown = set(data) - {"gpus", "pods", "teams", "namespaces", "allowed_pod_labels", "job_labels", "team_labels"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")

        def assignments(section: str) -> dict[str, Assignment]:
            table = data.get(section) or {}
            if not isinstance(table, dict):
                raise ValueError(f"{path}: '{section}' must map ids to {{job, team}}")
            out = {}
            for key, value in table.items():
                if not isinstance(value, dict) or set(value) - {"job", "team"}:
                    raise ValueError(f"{path}: {section}.{key} must be {{job: ..., team: ...}}")
                out[str(key)] = Assignment(str(value.get("job", "")), str(value.get("team", "")))
            return out

        def names(section: str) -> dict[str, str]:
            table = data.get(section) or {}
            if not isinstance(table, dict) or any(isinstance(v, (dict, list)) for v in table.values()):
                raise ValueError(f"{path}: '{section}' must map names to a team")
            return {str(k): str(v) for k, v in table.items()}

        settings: dict[str, Any] = {
            "gpus": assignments("gpus"),
            "pods": assignments("pods"),
            "teams": tuple(names("teams").items()),
            "namespaces": names("namespaces"),
        }
        for key in ("allowed_pod_labels", "job_labels", "team_labels"):
            if key in data:
                values = tuple(str(v) for v in data[key] or ())
                settings[key] = frozenset(values) if key == "allowed_pod_labels" else values
        settings.update(overrides)
        return cls(**settings)

    @property
    def active(self) -> bool:
        """Whether points need looking at (an empty config only filters pod labels)."""
        return bool(self.gpus or self.pods or self.teams or self.namespaces or self.gpu_jobs_from_processes)

    def team_of_job(self, job: str) -> str:
        for pattern, team in self.teams:
            if fnmatch.fnmatchcase(job, pattern):
                return team
        return ""


@dataclass
class EnrichStats:
    jobs_added: int = 0
    teams_added: int = 0
    labels_dropped: int = 0


class GpuJobIndex:
    """``hw.id`` → the job and team of the process last seen on it, learned from process
    attribution (``process.gpu.*`` points carry both); bounded, oldest GPU forgotten first."""

    def __init__(self, max_gpus: int = 100_000) -> None:
        self._max = max_gpus
        self.version = 0
        self._jobs: collections.OrderedDict[str, Assignment] = collections.OrderedDict()

    def learn(self, gpu: str, assignment: Assignment) -> None:
        if self._jobs.get(gpu) != assignment:
            self.version += 1  # decisions made from the old assignment are stale
        self._jobs[gpu] = assignment
        self._jobs.move_to_end(gpu)
        while len(self._jobs) > self._max:
            self._jobs.popitem(last=False)

    def get(self, gpu: str) -> Assignment | None:
        return self._jobs.get(gpu)

    def __len__(self) -> int:
        return len(self._jobs)


def enrich_metrics(
    request: Any,
    config: EnrichConfig,
    index: GpuJobIndex | None = None,
    *,
    done: Container[int] = (),
    learn: bool = True,
) -> EnrichStats:
    """Add job and team to an ``ExportMetricsServiceRequest`` in place (see :class:`EnrichConfig`).
    ``done``: ids of metrics whose labels were already enriched (by :class:`EnrichLabels` during
    normalization); ``learn=False`` when the caller already learned from ``request``."""
    stats = EnrichStats()
    if learn and index is not None and config.gpu_jobs_from_processes:
        learn_jobs(request, index)
    for resource_metrics in request.resource_metrics:
        resource, drop = _read_resource(resource_metrics.resource.attributes, config.allowed_pod_labels)
        if drop:
            for position in reversed(drop):
                del resource_metrics.resource.attributes[position]
            stats.labels_dropped += len(drop)
        resource_job = resource.get(JOB) or _first_label(resource, config.job_labels)
        resource_team = resource.get(TEAM) or _first_label(resource, config.team_labels)
        resource_team = resource_team or _team(config, resource_job, resource.get(Attributes.K8S_NAMESPACE_NAME, ""))
        attributes = resource_metrics.resource.attributes
        if resource_job and JOB not in resource:
            attributes.add(key=JOB).value.string_value = resource_job
            stats.jobs_added += 1
        if resource_team and TEAM not in resource:
            attributes.add(key=TEAM).value.string_value = resource_team
            stats.teams_added += 1
        if not config.active:
            continue
        decisions = _decisions(config)
        cache = decisions.get((resource_job, index.version if index is not None else 0))
        if cache is None:
            if len(decisions) >= MAX_CACHED_RESOURCES:  # old index versions and jobs: start over
                decisions.clear()
            cache = decisions[(resource_job, index.version if index is not None else 0)] = {}
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if id(metric) in done or not metric.name.startswith(GPU_METRIC_PREFIXES):
                    continue
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                for point in getattr(metric, kind).data_points:
                    identity = point_identity(point)
                    decision = cache.get(identity)
                    if decision is None:
                        decision = _decide(point.attributes, config, index, resource_job)
                        if len(cache) >= MAX_CACHED_DECISIONS:
                            cache.clear()
                        if len(identity) <= MAX_CACHED_IDENTITY_BYTES:
                            cache[identity] = decision
                    if decision[0]:
                        point.MergeFromString(decision[0])  # appends the job/team attributes
                        stats.jobs_added += decision[1]
                        stats.teams_added += decision[2]
    return stats


def learn_jobs(request: Any, index: GpuJobIndex) -> None:
    """Which job each GPU works for, from the process attribution in ``request``."""
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if not metric.name.startswith("process.gpu."):
                    continue
                kind = metric.WhichOneof("data")
                for point in getattr(metric, kind).data_points if kind else ():
                    values = string_attributes_of(point.attributes)
                    if values.get(Attributes.HW_ID) and values.get(JOB):
                        index.learn(values[Attributes.HW_ID], Assignment(values[JOB], values.get(TEAM, "")))


class EnrichLabels:
    """Enrichment as a label hook of :func:`normalize_metrics`: a translated label set is enriched
    once, with its translation, instead of once per point. The resource's own job is not known
    there; dcgm-exporter's resources (a scrape target) carry none."""

    def __init__(self, config: EnrichConfig, index: GpuJobIndex | None) -> None:
        self.config = config
        self.index = index

    def state(self) -> int:
        return self.index.version if self.index is not None else 0

    def __call__(self, attributes: Any) -> None:
        if self.config.active:
            extra, _, _ = _decide(attributes, self.config, self.index, "")
            if extra:
                scratch = metrics_pb2.NumberDataPoint.FromString(extra)
                attributes.extend(scratch.attributes)


def _decide(attributes: Any, config: EnrichConfig, index: GpuJobIndex | None, resource_job: str) -> _Decision:
    """The attributes to add to a point with these labels (encoded), and whether a job and a team are
    among them; cached per label set (a scrape repeats each GPU's labels in every field)."""
    gpu = job = team = namespace = pod = ""
    for kv in attributes:
        key = kv.key
        if key == Attributes.HW_ID:
            gpu = kv.value.string_value
        elif key == JOB:
            job = kv.value.string_value
        elif key == TEAM:
            team = kv.value.string_value
        elif key == Attributes.K8S_NAMESPACE_NAME:
            namespace = kv.value.string_value
        elif key == Attributes.K8S_POD_NAME:
            pod = kv.value.string_value
        elif key == Attributes.FACTORYLENS_ALLOCATION_STATE and kv.value.string_value == "unallocated":
            return b"", 0, 0  # a free GPU's time belongs to no job, whoever the GPU is assigned to
    if not gpu and not job and not pod:
        return b"", 0, 0
    out = metrics_pb2.NumberDataPoint()
    assignment = None
    if not job and not resource_job:
        assignment = config.gpus.get(gpu) if gpu else None
        if assignment is None and pod:
            assignment = config.pods.get(f"{namespace}/{pod}")
        if assignment is None and gpu and index is not None and config.gpu_jobs_from_processes:
            assignment = index.get(gpu)
        if assignment is not None and assignment.job:
            job = assignment.job
            out.attributes.add(key=JOB).value.string_value = job
    if not team and (job or namespace):
        team = (assignment.team if assignment else "") or _team(config, job, namespace)
        if team:
            out.attributes.add(key=TEAM).value.string_value = team
    added = {kv.key for kv in out.attributes}
    return out.SerializeToString(), int(JOB in added), int(TEAM in added)


_Decision = tuple[bytes, int, int]  # encoded attributes to add, jobs added, teams added
_Cache = dict[tuple[str, int], dict[bytes, _Decision]]  # (resource job, index version) → label set → decision
_DECISIONS: dict[int, tuple[EnrichConfig, _Cache]] = {}


def _decisions(config: EnrichConfig) -> _Cache:
    """The decision cache of a config (configs are frozen: one cache each, the last few kept)."""
    entry = _DECISIONS.get(id(config))
    if entry is None or entry[0] is not config:
        if len(_DECISIONS) >= 8:
            _DECISIONS.clear()
        entry = _DECISIONS[id(config)] = (config, {})
    return entry[1]


def _team(config: EnrichConfig, job: str, namespace: str) -> str:
    return (config.team_of_job(job) if job else "") or config.namespaces.get(namespace, "")


def _first_label(resource: Mapping[str, str], labels: Iterable[str]) -> str:
    for label in labels:
        value = resource.get(POD_LABEL_PREFIX + label)
        if value:
            return value
    return ""


def _read_resource(attributes: Any, allowed: frozenset[str]) -> tuple[dict[str, str], list[int]]:
    """A resource's string attributes (as :func:`string_attributes_of`, pod labels not allowed included: they are
    read before they go) and the indexes of those pod labels, in one pass."""
    values: dict[str, str] = {}
    drop: list[int] = []
    for index, kv in enumerate(attributes):
        key = kv.key
        value = kv.value
        if value.WhichOneof("value") == "string_value":
            values[key] = value.string_value
        if key.startswith(POD_LABEL_PREFIX) and key[len(POD_LABEL_PREFIX) :] not in allowed:
            drop.append(index)
    return values, drop


def string_attributes_of(attributes: Any) -> dict[str, str]:
    """The string-valued attributes of a list (the ones names and joins use)."""
    return {kv.key: kv.value.string_value for kv in attributes if kv.value.WhichOneof("value") == "string_value"}
