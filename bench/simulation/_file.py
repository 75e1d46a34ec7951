"""Scored scenario files: the receiver's fault scenario (``receivers/gpu/sim/faults.py``) plus what a
run needs to be scored by ``bench/scenarios.py --scenario FILE``::

    cluster: {hosts: 2, gpus_per_host: 8, model: H100}   # the simulated cluster (defaults: 2, 8, H100)
    seed: 7                                             # noise and placement (default 0)
    duration: 20m                                       # run length (default: last fault start + 7 min)
    scrape_interval: 10s                                # optional (default 10 s)
    faults:
      - kind: pcie_degradation
        target: {host: sim-node-1, gpu: 2}
        start: 11m
        params: {throughput_fraction: 0.1, replays_per_s: 0}
        expect: {entity: "gpu:{host=sim-node-1,gpu=2}", domain: gpu}   # the root cause to name
      - kind: ecc_corrected
        target: {host: sim-node-0, gpu: 1}
        start: 630s
        expect: {incident: false}                   # harmless: must not open (or top) an incident

``expect`` (per fault; a fault without one is part of the world but not scored):

- ``entity``: the root cause as the RCA store names it (``gpu:<hw.id>``, ``host:<host>``,
  ``nic:<host>/<port>``, ``fs:<host>/<mountpoint>``, ``rank:<job>/<rank>``, ``job:<job>``), a glob
  (``nic:sim-node-1/*``), with ``{host=H,gpu=N}`` standing for that GPU's hw.id. Default: what the
  fault hits (its GPU; its host's mount, port or the host itself);
- ``domain``: gpu, host, storage, network, data or app (default: from the entity's kind);
- ``also``: other names of the same cause (globs), e.g. the job's ranks for a job;
- ``incident``: false for a fault that must not open an incident nor outrank a true cause (a
  harmless signal, a fault on a GPU no job uses). Default true.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from factorylens.receivers.gpu.sim.faults import NODE_FAULTS, Scenario, ScenarioError, parse_duration
from factorylens.receivers.gpu.sim.models import MODELS
from factorylens.simulation._catalog import Decoy, FaultSpec, Injected, Targets, Truth

POST_LAST_FAULT_S = 420.0
_GPU_REF = re.compile(r"\{host=([^,{}]+),\s*gpu=(\d+)\}")
_DOMAINS = {"gpu": "gpu", "host": "host", "nic": "network", "fs": "storage", "rank": "app", "job": "app"}
_EXPECT_KEYS = {"entity", "domain", "also", "incident"}
_CLUSTER_KEYS = {"hosts", "gpus_per_host", "model"}
_HOST_KINDS = NODE_FAULTS | {"driver_missing"}


@dataclass(frozen=True)
class Expectation:
    """What one fault of a scenario file should (not) lead to; ``entity`` as written (unresolved)."""

    fault: int  # index in the file's faults
    entity: str | None
    domain: str | None
    also: tuple[str, ...] = ()
    incident: bool = True


@dataclass(frozen=True)
class ScenarioFile:
    """A scenario file with its cluster, seed, duration and expectations (see the module's doc)."""

    path: Path
    name: str
    hosts: int
    gpus_per_host: int
    model: str
    seed: int
    duration_s: float
    scrape_interval_s: float
    faults: tuple[dict[str, Any], ...]  # the simulator's faults, ``expect`` left out
    expectations: tuple[Expectation, ...]
    scenario: Scenario  # the faults as the simulator parsed them (starts in seconds)

    @property
    def onset_s(self) -> float:
        """The first fault that should open an incident (else the first scored, else the first)."""
        scored = [e for e in self.expectations if e.incident] or list(self.expectations)
        chosen = [self.scenario.faults[e.fault] for e in scored] or list(self.scenario.faults)
        return min((f.start_s for f in chosen), default=0.0)

    @property
    def gradual(self) -> bool:
        return any(self.scenario.faults[e.fault].ramp_s > 0 for e in self.expectations if e.incident)

    def spec(self) -> FaultSpec:
        """The file as a :class:`FaultSpec` that :class:`~factorylens.simulation.ScenarioRun` runs."""
        kinds = ", ".join(f.describe() for f in self.scenario.faults)
        return FaultSpec(
            self.name,
            self.name,
            next((e.domain or "" for e in self.expectations if e.incident), ""),
            f"{self.path.name}: {kinds}",
            (),
            self._inject,
            gradual=self.gradual,
        )

    def run(self, **kwargs: Any) -> Any:
        """A :class:`~factorylens.simulation.ScenarioRun` of this file (keyword arguments override it)."""
        from factorylens.simulation._run import ScenarioRun

        options: dict[str, Any] = {
            "seed": self.seed,
            "hosts": self.hosts,
            "gpus_per_host": self.gpus_per_host,
            "model": self.model,
            "scrape_interval_s": self.scrape_interval_s,
            "onset_s": self.onset_s,
            "duration_s": self.duration_s,
            "benign_anomaly": False,
            **kwargs,
        }
        return ScenarioRun(self.spec(), **options)

    def _inject(self, targets: Targets, onset_s: float) -> Injected:
        truths: list[Truth] = []
        decoys: list[Decoy] = []
        for expectation in self.expectations:
            fault = self.scenario.faults[expectation.fault]
            entity = resolve_entity(expectation.entity or default_entity(fault.kind, fault, targets), targets)
            if expectation.incident:
                domain = expectation.domain or _DOMAINS.get(entity.split(":", 1)[0], "")
                truths.append(Truth(entity, domain, expectation.also, onset_s=fault.start_s))
            else:
                why = f"fault #{expectation.fault + 1} ({fault.kind}) expects no incident"
                decoys.append(Decoy(entity, why, onset_s=fault.start_s))
                decoys.extend(Decoy(also, why, onset_s=fault.start_s) for also in expectation.also)
        return Injected([dict(f) for f in self.faults], [], tuple(truths), tuple(decoys))


def load_scenario_file(path: str | Path) -> ScenarioFile:
    """Read and check a scored scenario file; :class:`ScenarioError` says what is wrong where."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path} is not valid YAML: {exc}") from None
    try:
        return _parse(path, data or {})
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def _parse(path: Path, data: Any) -> ScenarioFile:
    scenario = Scenario.from_dict(data)  # the simulator's checks (and the allowed keys) first
    cluster = data.get("cluster") or {}
    if not isinstance(cluster, Mapping) or set(cluster) - _CLUSTER_KEYS:
        raise ScenarioError(f"cluster must be a mapping of {sorted(_CLUSTER_KEYS)}")
    hosts, gpus = cluster.get("hosts", 2), cluster.get("gpus_per_host", 8)
    model = str(cluster.get("model", "H100"))
    if not (_count(hosts) and hosts >= 1 and _count(gpus) and gpus >= 4):
        raise ScenarioError("cluster.hosts must be an integer ≥ 1 and cluster.gpus_per_host an integer ≥ 4")
    if model not in MODELS:
        raise ScenarioError(f"cluster.model {model!r} is not one of {', '.join(MODELS)}")
    seed = data.get("seed", 0)
    if not _count(seed):
        raise ScenarioError("seed must be an integer")
    interval = parse_duration(data["scrape_interval"], "scrape_interval") if "scrape_interval" in data else 10.0
    if interval <= 0:
        raise ScenarioError("scrape_interval must be positive")
    raw_faults = list(data.get("faults") or [])
    if not raw_faults:
        raise ScenarioError("a scored scenario needs at least one fault")
    names = tuple(f"sim-node-{h}" for h in range(hosts))
    expectations = []
    for index, (raw, fault) in enumerate(zip(raw_faults, scenario.faults, strict=True)):
        where = f"fault #{index + 1} ({fault.kind})"
        host = fault.host if isinstance(fault.host, int) else names.index(fault.host) if fault.host in names else -1
        if not 0 <= host < hosts:
            raise ScenarioError(f"{where}: host {fault.host!r} is not in the cluster ({', '.join(names)})")
        if fault.gpu is not None and fault.gpu >= gpus:
            raise ScenarioError(f"{where}: gpu {fault.gpu} is not on a {gpus}-GPU host")
        if "expect" in raw:
            expectation = _expectation(where, index, raw["expect"], hosts, gpus, names)
            if expectation.entity is None and fault.gpu is None and fault.kind not in _HOST_KINDS:
                raise ScenarioError(f"{where}: on every GPU of a host: say which entity to expect (expect.entity)")
            expectations.append(expectation)
    if "duration" in data:
        duration = parse_duration(data["duration"], "duration")
    else:
        duration = max(f.start_s for f in scenario.faults) + POST_LAST_FAULT_S
    if not math.isfinite(duration) or duration <= interval:
        raise ScenarioError("duration must be longer than one scrape interval")
    faults = tuple({k: v for k, v in raw.items() if k != "expect"} for raw in raw_faults)
    return ScenarioFile(
        path, path.stem, hosts, gpus, model, seed, duration, interval, faults, tuple(expectations), scenario
    )


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expectation(where: str, index: int, raw: Any, hosts: int, gpus: int, names: tuple[str, ...]) -> Expectation:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping) or set(raw) - _EXPECT_KEYS:
        raise ScenarioError(f"{where}: expect must be a mapping of {sorted(_EXPECT_KEYS)}")
    entity = raw.get("entity")
    if entity is not None:
        entity = str(entity)
        if not re.match(r"^(gpu|host|nic|fs|rank|job|\*):", entity) and entity != "*":
            raise ScenarioError(f"{where}: expect.entity {entity!r} is not gpu:, host:, nic:, fs:, rank: or job:")
        for host, gpu in _GPU_REF.findall(entity):
            if not (host in names or (host.isdigit() and int(host) < hosts)) or int(gpu) >= gpus:
                raise ScenarioError(f"{where}: expect.entity names a GPU not in the cluster: {{host={host},gpu={gpu}}}")
    domain = raw.get("domain")
    if domain is not None and domain not in set(_DOMAINS.values()) | {"data"}:
        raise ScenarioError(f"{where}: expect.domain {domain!r} is not one of gpu, host, storage, network, data, app")
    also = raw.get("also") or []
    if isinstance(also, str):
        also = [also]
    if not isinstance(also, list) or not all(isinstance(a, str) for a in also):
        raise ScenarioError(f"{where}: expect.also must be a list of entity names or globs")
    incident = raw.get("incident", True)
    if not isinstance(incident, bool):
        raise ScenarioError(f"{where}: expect.incident must be true or false")
    return Expectation(index, entity, domain, tuple(also), incident)


def resolve_entity(pattern: str, targets: Targets) -> str:
    """``{host=H,gpu=N}`` (H a host name or index) replaced by that GPU's hw.id."""

    def gpu_id(match: re.Match[str]) -> str:
        host, gpu = match.group(1).strip(), int(match.group(2))
        index = int(host) if host.isdigit() else targets.hosts.index(host)
        return targets.gpu_ids[index][gpu]

    return _GPU_REF.sub(gpu_id, pattern)


def default_entity(kind: str, fault: Any, targets: Targets) -> str:
    """What a fault of ``kind`` hits, named as the store names it."""
    host = fault.host if isinstance(fault.host, str) else targets.hosts[fault.host]
    if kind in ("slow_storage", "filesystem_full"):
        return f"fs:{host}/{fault.params['mount']}"
    if kind in ("ib_link_flap", "ib_symbol_errors", "ib_congestion", "nic_down"):
        return f"nic:{host}/{fault.params['port']}"  # "*": any port of the host, a glob
    if kind in _HOST_KINDS:
        return f"host:{host}"
    if fault.gpu is None:
        raise ScenarioError(f"{kind} on every GPU of {host}: say which entity to expect (expect.entity)")
    return f"gpu:{{host={host},gpu={fault.gpu}}}"
