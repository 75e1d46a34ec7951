"""Adapters from public labelled root-cause datasets to the ranking engine's inputs.

Each adapter turns one dataset layout into :class:`RcaCase` objects: a wide frame (UTC index, columns
``(entity, signal)``), a :class:`Topology`, the KPI columns that broke, the time they broke and the
label. Everything dataset-specific (file layouts, naming, clock quirks) stays here, so the engine and
BARO see only the generic convention.

- PetShop (Hardt et al., "The PetShop Dataset — Finding Causes of Performance Issues across
  Microservices", CLeaR 2024, arXiv:2311.04806; github.com/amazon-science/petshop-root-cause-analysis,
  CC-BY-4.0): AWS X-Ray service-map metrics at 5-minute steps, ``graph.csv`` adjacency, one folder per
  issue with ``metrics.csv`` and ``target.json``. X-Ray cannot follow a trace through an Elastic Load
  Balancer: the caller's side becomes a ``<lb-dns-name>_remote`` node with no edges, and the service
  behind it sees untraced requests (its ``<service>_client`` node). The adapter joins the two ends
  (see :func:`_load_balancer_targets`).
- Nezha (Yu et al., "Nezha: Interpretable Fine-Grained Root Causes Analysis for Microservices on
  Multi-Modal Observability Data", ESEC/FSE 2023; github.com/IntelligentDDS/Nezha, MIT): Online
  Boutique on Kubernetes, per-pod metrics at 60-second steps, per-call-edge latency, the call graph
  and one fault list per day.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from factorylens.evaluation._spans import replay_spans, span_frame
from factorylens.rca_service.ranking import Topology
from factorylens.rca_service.store import SeriesStore


@dataclass
class RcaCase:
    """One labelled incident. ``history`` is older normal operation (the engine uses only its spread);
    ``candidates`` are the entities a ranking may name (None: every entity)."""

    case_id: str
    frame: pd.DataFrame
    topology: Topology
    kpi: list[tuple[str, str]]
    t0: pd.Timestamp
    root_cause: str
    fault_type: str
    history: pd.DataFrame | None = None
    candidates: list[str] | None = None
    subset: str = ""  # a part of the dataset reported on its own (e.g. the faults that have spans)


# ---- PetShop ---------------------------------------------------------------------------------------

_PETSHOP_LAYOUT = "<scenario>/graph.csv and <scenario>/<split>/issue_<n>/{metrics.csv,target.json}"


def load_petshop(root: str | Path) -> Iterator[RcaCase]:
    """Every issue under ``root``: a PetShop ``dataset/`` folder (one sub-folder per traffic scenario),
    its parent, or a single scenario folder. The layout is checked before the first case is read."""
    root = Path(root)
    scenarios = _petshop_scenarios(root)
    issues = {s: sorted(s.glob("*/issue_*"), key=_petshop_issue_key) for s in scenarios}
    if not any(issues.values()):
        raise FileNotFoundError(f"{root}: PetShop scenarios without issues; expected {_PETSHOP_LAYOUT}")
    return _petshop_cases(issues)


def _petshop_scenarios(root: Path) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such PetShop folder")
    if (root / "graph.csv").is_file():
        return [root]
    if (root / "dataset").is_dir():
        root = root / "dataset"
    scenarios = sorted(p for p in root.iterdir() if (p / "graph.csv").is_file())
    if not scenarios:
        raise FileNotFoundError(f"{root}: not a PetShop folder; expected {_PETSHOP_LAYOUT}")
    return scenarios


def _petshop_issue_key(path: Path) -> tuple[str, int]:
    number = path.name.rsplit("_", 1)[-1]
    return path.parent.name, int(number) if number.isdigit() else -1


def _petshop_cases(issues: dict[Path, list[Path]]) -> Iterator[RcaCase]:
    for scenario, folders in issues.items():
        topology = _petshop_topology(scenario / "graph.csv")
        behind = _load_balancer_targets(topology)
        for balancer, service in behind.items():
            topology.add_edge(balancer, service, "calls")
        normal = scenario / "noissue" / "metrics.csv"
        history = _with_caller_views(_petshop_frame(normal), behind) if normal.is_file() else None
        for folder in folders:
            for name in ("metrics.csv", "target.json"):
                if not (folder / name).is_file():
                    raise FileNotFoundError(f"{folder / name}: missing; expected {_PETSHOP_LAYOUT}")
            try:
                label = json.loads((folder / "target.json").read_text())
                target, root_cause = label["target"], label["root_cause"]["node"]
                kpi = [(target["node"], f"{target['metric']}.{target['agg']}")]
                t0 = pd.Timestamp(float(target["timestamp"]), unit="s", tz="UTC")
                fault_type = str(target["metric"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{folder / 'target.json'}: not a PetShop label ({exc!r})") from exc
            frame = _with_caller_views(_petshop_frame(folder / "metrics.csv"), behind)
            yield RcaCase(
                f"{scenario.name}/{folder.parent.name}/{folder.name}",
                frame,
                topology,
                kpi,
                t0,
                root_cause,
                fault_type,
                history=history,
            )


def _petshop_frame(path: Path) -> pd.DataFrame:
    """X-Ray metrics: three header rows (node, metric, statistic), unix seconds as index."""
    try:
        table = pd.read_csv(path, header=[0, 1, 2], index_col=0)
        table.index = pd.to_datetime(table.index.astype(float), unit="s", utc=True)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{path}: not a PetShop metrics file (3 header rows, unix-second index): {exc}") from exc
    headers = cast("list[tuple[str, str, str]]", list(table.columns))  # a MultiIndex: its items are tuples
    table.columns = pd.MultiIndex.from_tuples(
        [(node, f"{metric}.{stat}") for node, metric, stat in headers], names=["entity", "signal"]
    )
    return table.astype(float).sort_index()


def _petshop_topology(path: Path) -> Topology:
    """``graph.csv`` is a square adjacency matrix, row node -> column node (the caller depends on the
    callee)."""
    matrix = pd.read_csv(path, index_col=0)
    if list(matrix.index) != list(matrix.columns):
        raise ValueError(f"{path}: not a square adjacency matrix with the same nodes on both axes")
    topology = Topology()
    for node in matrix.index:
        topology.add_entity(node)
    rows, columns = np.nonzero(matrix.to_numpy() == 1)
    for r, c in zip(rows, columns, strict=False):
        topology.add_edge(matrix.index[int(r)], matrix.columns[int(c)], "calls")
    return topology


_LOAD_BALANCER = re.compile(r"^(?P<name>[^.]+)\.(?:[^.]+\.)*elb\.amazonaws\.com_remote$", re.IGNORECASE)


def _load_balancer_targets(topology: Topology) -> dict[str, str]:
    """Load-balancer node -> the service behind it, where the data names it unambiguously.

    An ELB's DNS name starts with the balancer's name, which the deployment derives from the service
    it fronts (``servi-searc`` fronts PetSearch, ``servi-lista`` petlistadoptions). The last
    dash-separated part of that name must occur in exactly one component's name; X-Ray's ``_remote``
    and ``_client`` nodes are observation points, not components. A balancer called only by the
    service behind it is that service calling itself and adds nothing."""
    components = [e for e in topology.entities if not e.endswith(("_remote", "_client"))]
    callers = topology.dependents()
    targets = {}
    for node in sorted(topology.entities):
        match = _LOAD_BALANCER.match(node)
        if match is None:
            continue
        part = match["name"].rsplit("-", 1)[-1].lower()
        found = [c for c in components if part in c.lower()]
        if len(found) == 1 and callers.get(node, set()) - {found[0]}:
            targets[node] = found[0]
    return targets


def _with_caller_views(frame: pd.DataFrame, behind: dict[str, str]) -> pd.DataFrame:
    """Also file a balancer node's series under the service behind it, as its callers' view of that
    service (the same reading as Nezha's caller-side per-edge latency): what the caller measured
    through the balancer is the service's behaviour, but it may be inflated by the caller or the
    balancer, so it must not clear them. The balancer keeps its own copy and stays a candidate."""
    views = [c for c in cast("list[tuple[str, str]]", list(frame.columns)) if c[0] in behind]
    if not views:
        return frame
    copied = frame[views].set_axis(
        pd.MultiIndex.from_tuples(
            [(behind[node], f"{signal} seen_by_caller via {node.removesuffix('_remote')}") for node, signal in views],
            names=frame.columns.names,
        ),
        axis=1,
    )
    return pd.concat([frame, copied], axis=1)


# ---- Nezha -------------------------------------------------------------------------------------------

_NEZHA_LAYOUT = (
    "<day>/<day>-fault_list.json and <day>/metric/front_service.csv + <pod>_metric.csv (optional: "
    "metric/{dependency,source_50,destination_50}.csv, trace/HH_MM_trace.csv[.gz])"
)
_NEZHA_FILES = ("front_service.csv",)
WITH_SPANS, WITHOUT_SPANS = "with spans", "without spans"
_POD_HASHES = re.compile(r"-[a-z0-9]+-[a-z0-9]+$")
_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_HOST_SIGNALS = ("NodeCpuUsageRate(%)", "NodeMemoryUsageRate(%)", "NodeNetworkReceiveBytes")
ENTRY = "entry"
STEP = pd.Timedelta(seconds=60)
FAULT_DURATION = pd.Timedelta(minutes=3)
RECOVERY = pd.Timedelta(minutes=2)
LOOKBACK = pd.Timedelta(hours=6)
AFTER = pd.Timedelta(minutes=5)


def pod_to_service(pod: str) -> str:
    """A Kubernetes pod name without its ReplicaSet and pod hashes: the service it belongs to."""
    return _POD_HASHES.sub("", pod)


def load_nezha(root: str | Path, traces: bool = False) -> Iterator[RcaCase]:
    """Every fault under ``root``: Nezha's ``rca_data/`` (one folder per day), its parent, or one day.

    Per fault: the entry-service SLI is the KPI on its own entity ``entry``, which depends on the
    services nobody else calls; the reference reaches back ``LOOKBACK`` with every earlier fault of
    the day masked (NaN) for its duration plus ``RECOVERY``, because faults are only minutes apart;
    the incident window runs ``AFTER`` past the injection or to the next fault. Candidates are the
    services. With ``traces``, the day's span files go through the RCA service's span ingest and the
    series and call edges it derives join the frame and topology (see ``_spans``); a case's
    ``subset`` says whether the minute of its injection has spans. A day without the service-mesh
    files (``dependency.csv``, ``source_50.csv``, ``destination_50.csv``) takes its call graph from
    its spans."""
    root = Path(root)
    days = _nezha_days(root)
    return (case for day in days for case in _nezha_day_cases(day, traces))


def _nezha_days(root: Path) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such Nezha folder")
    if (root / "rca_data").is_dir():
        root = root / "rca_data"
    days = [root] if (root / "metric").is_dir() else sorted(p for p in root.iterdir() if (p / "metric").is_dir())
    if not days:
        raise FileNotFoundError(f"{root}: not a Nezha folder; expected {_NEZHA_LAYOUT}")
    for day in days:
        needed = [day / f"{day.name}-fault_list.json"] + [day / "metric" / name for name in _NEZHA_FILES]
        missing = [str(p) for p in needed if not p.is_file()]
        if missing or not any((day / "metric").glob("*_metric.csv")):
            raise FileNotFoundError(
                f"{day}: missing {', '.join(missing) or '<pod>_metric.csv files'}; expected {_NEZHA_LAYOUT}"
            )
    return days


def _on_grid(table: pd.DataFrame, time_column: str, base: pd.Timestamp | None = None) -> pd.DataFrame:
    """Index rows by their ``time_column`` snapped to the day's 60 s grid (files are sampled about 60 s
    apart with a second of jitter), dropping the time columns. The text times look like
    ``2022-08-22 03:51:19.799087274 +0000 UTC m=+0.305``; the numeric ``TimeStamp`` is not used: on
    2022-08-22 adservice's is offset by +200000000 s. Without ``base`` the grid starts at the first row."""
    times = pd.to_datetime(
        table[time_column].astype(str).str.split(" +", n=1, regex=False).str[0], utc=True, format="ISO8601"
    )
    base = times.iloc[0].round("s") if base is None else base
    steps = np.round((times - base) / STEP).astype(int)
    table = table.drop(columns=[c for c in table.columns if c.lower() in ("time", "timestamp")])
    table.index = pd.DatetimeIndex(base + steps * STEP)
    return table[~table.index.duplicated()]


def _read_table(
    path: Path, time_column: str, base: pd.Timestamp | None = None, drop: tuple[str, ...] = ()
) -> pd.DataFrame:
    """A Nezha metric CSV on the day's grid, numeric columns only; a ValueError names the file."""
    try:
        table = pd.read_csv(path).drop(columns=list(drop), errors="ignore")
        return _on_grid(table, time_column, base).astype(float)
    except (KeyError, ValueError, IndexError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: not a Nezha metric file with a {time_column!r} column ({exc!r})") from exc


def _nezha_day_cases(day: Path, traces: bool = False) -> Iterator[RcaCase]:
    frame, topology, kpi, services = nezha_day_frame(day, traces)
    faults = _nezha_faults(day / f"{day.name}-fault_list.json")
    span_minutes = {path.name[:5] for path in _span_files(day)}
    starts = [t for t, _, _ in faults]
    for i, (start, pod, fault_type) in enumerate(faults):
        end = start + AFTER
        if i + 1 < len(starts):
            end = min(end, starts[i + 1])
        window = frame.loc[(frame.index > start - LOOKBACK) & (frame.index <= end)].copy()
        for earlier in starts[:i]:
            window.loc[(window.index > earlier) & (window.index <= earlier + FAULT_DURATION + RECOVERY)] = np.nan
        yield RcaCase(
            f"{day.name}/{start:%H:%M:%S}",
            window,
            topology,
            kpi,
            start,
            pod_to_service(pod),
            fault_type,
            candidates=services,
            subset=WITH_SPANS if f"{start:%H_%M}" in span_minutes else WITHOUT_SPANS,
        )


def _span_files(day: Path) -> list[Path]:
    return sorted((day / "trace").glob("*_trace.csv*")) if (day / "trace").is_dir() else []


def nezha_day_frame(day: Path, traces: bool = False) -> tuple[pd.DataFrame, Topology, list[tuple[str, str]], list[str]]:
    """One day's whole frame (columns ``(entity, signal)`` on the 60 s grid, nothing masked), its
    topology, the entry-service KPI columns and the services (the candidates); with ``traces``, the
    series and call edges the service derives from the day's spans too."""
    metric_dir = day / "metric"
    entry = _read_table(metric_dir / "front_service.csv", "Time", drop=("ServiceName",))
    base = entry.index[0]
    pairs: list[tuple[str, str]] = []
    if (metric_dir / "dependency.csv").is_file():
        try:
            dependencies = pd.read_csv(metric_dir / "dependency.csv")
            pairs = list(zip(dependencies["Source"].astype(str), dependencies["Target"].astype(str), strict=False))
        except (KeyError, ValueError, pd.errors.ParserError) as exc:
            raise ValueError(
                f"{metric_dir / 'dependency.csv'}: not a Source,Target,Weight call graph ({exc!r})"
            ) from exc
    topology = Topology()
    host_of: dict[str, str] = {}
    for source, target in pairs:
        if _IPV4.match(target):
            host_of[source] = f"host:{target}"
            topology.add_edge(source, host_of[source], "runs_on")
        else:
            topology.add_edge(source, target, "calls")

    entry.columns = pd.MultiIndex.from_tuples([(ENTRY, c) for c in entry.columns])
    parts = [entry]
    hosts: dict[str, pd.DataFrame] = {}
    for path in sorted(metric_dir.glob("*_metric.csv")):
        service = pod_to_service(path.name[: -len("_metric.csv")])
        table = _read_table(path, "Time", base, drop=("PodName",))
        host_columns = [c for c in table.columns if c in _HOST_SIGNALS]
        host = host_of.get(service)
        if host is not None:
            if host not in hosts:  # every pod on a host reports the same host series: keep one copy
                hosts[host] = table[host_columns].set_axis(
                    pd.MultiIndex.from_tuples([(host, c) for c in host_columns]), axis=1
                )
            table = table.drop(columns=host_columns)
        table.columns = pd.MultiIndex.from_tuples([(service, c) for c in table.columns])
        parts.append(table)
    parts.extend(hosts.values())
    # per-edge latency belongs to the callee; the caller's side may be inflated by the caller itself
    for name, label in (
        ("source_50.csv", "latency_seen_by_caller_{}(s)"),
        ("destination_50.csv", "latency_seen_by_self_from_{}(s)"),
    ):
        if not (metric_dir / name).is_file():
            continue
        table = _read_table(metric_dir / name, "time", base)
        edges = [c.split("_", 1) for c in table.columns]
        if any(len(edge) != 2 for edge in edges):
            raise ValueError(f"{metric_dir / name}: columns must be <caller>_<callee>, got {list(table.columns)}")
        table.columns = pd.MultiIndex.from_tuples([(callee, label.format(caller)) for caller, callee in edges])
        parts.append(table)
    frame = pd.concat(parts, axis=1).sort_index()
    if traces and _span_files(day):
        store = _replayed_spans(day)
        parts.append(span_frame(store, pd.DatetimeIndex(frame.index)))
        frame = pd.concat(parts, axis=1).sort_index()
        for (caller, callee), _ in sorted(store.call_counts().items()):
            topology.add_edge(caller, callee, "calls")
    frame = frame.sort_index(axis=1)
    frame.columns.names = ["entity", "signal"]

    services = sorted({e for e in frame.columns.get_level_values(0) if e != ENTRY and e not in hosts})
    callees = {dst for (_, dst), relation in topology.edges.items() if relation == "calls"}
    for service in services:
        if service not in callees:
            topology.add_edge(ENTRY, service, "calls")
    kpi = [(ENTRY, c) for c in entry.columns.get_level_values(1)]
    return frame, topology, kpi, services


@functools.lru_cache(maxsize=4)
def _replayed_spans(day: Path) -> SeriesStore:
    """The day's spans through the service's span ingest (once per day and process: about a minute)."""
    store, _ = replay_spans(_span_files(day), pod_to_service)
    return store


def _nezha_faults(path: Path) -> list[tuple[pd.Timestamp, str, str]]:
    """(injection time, pod, fault type), in time order; ``inject_time`` is UTC text (the
    ``inject_timestamp`` field is unreliable in the source)."""
    try:
        by_hour = json.loads(path.read_text())
        faults = [
            (pd.Timestamp(f["inject_time"], tz="UTC"), str(f["inject_pod"]), str(f["inject_type"]))
            for entries in by_hour.values()
            for f in entries
        ]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a Nezha fault list ({exc!r})") from exc
    return sorted(faults)
