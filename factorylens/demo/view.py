"""What ``factorylens demo`` shows: the stack followed over the RCA service's API (health, incidents,
the GPUs' state, the jobs' step time), in place with ``rich`` or line by line (``--plain``), and the
summary at the end: each incident with its ranked causes and whether it named the injected fault,
cost and idle cost per team, cost per 1M tokens, predictability per job."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import grpc

from factorylens.demo.world import SCRAPE_S, PlannedFault
from factorylens.registry import Attributes, Metrics

if TYPE_CHECKING:
    from factorylens.demo import Endpoints, Stack, World

RPC_TIMEOUT_S = 20.0  # the service answers between analysis passes, which can take seconds
GRID_EVERY_S = 3.0  # the GPU grid and the jobs are re-read this often (the health and incidents every poll)
STATE_STYLE = {
    "busy": "green",
    "idle": "grey50",
    "degraded": "yellow",
    "failed": "red",
    "cause": "magenta",
    "": "grey23",
}
STATE_CHAR = {"busy": "█", "idle": "░", "degraded": "▓", "failed": "X", "cause": "◆", "": "·"}


@dataclass
class JobRow:
    job: str
    team: str
    ranks: int
    step_s: float  # the slowest rank's latest mean step time
    baseline_s: float  # what the service's baseline expected of that rank (NaN: no baseline yet)


@dataclass
class Snapshot:
    sim_s: float
    services: list[tuple[str, bool]]
    points_per_s: float
    spans_per_s: float
    series: int
    grid: dict[str, list[str]]  # host -> state per GPU
    jobs: list[JobRow]
    incidents: list[Any]  # rca_pb2.Incident, newest first


@dataclass
class FaultResult:
    planned: PlannedFault
    incident: Any | None  # the incident whose top cause it is
    best_rank: int | None  # where it ranks best among the causes of incidents near its onset


@dataclass
class Outcome:
    faults: list[FaultResult]
    incidents: list[Any]
    unexplained: list[Any]  # performance incidents whose top cause is no injected fault
    waste: list[Any]
    cost: Any | None  # cost_report.Report by team
    cost_error: str = ""
    sim_s: float = 0.0
    wall_s: float = 0.0
    names: dict[str, str] = field(default_factory=dict)
    steadiness: dict[str, float] = field(default_factory=dict)  # job -> share of steady scrapes

    @property
    def matched(self) -> int:
        return sum(1 for f in self.faults if f.incident is not None)


def _onset_s(world: World, unix_nano: int) -> float:
    return unix_nano / 1e9 - world.start_time


def judge(
    world: World, incidents: list[Any], until_s: float = math.inf
) -> tuple[list[FaultResult], list[Any], list[Any]]:
    """Each planned fault that began before ``until_s`` with its incident (its top cause is the fault,
    beginning after it and before the next), and the performance incidents no fault explains."""
    performance = [i for i in incidents if i.kind != "waste"]
    waste = [i for i in incidents if i.kind == "waste"]
    results = []
    explained: set[str] = set()
    onsets = sorted(p.onset_s for p in world.planned)
    for planned in (p for p in world.planned if p.onset_s < until_s):
        # its incident begins after it does (a scrape early at most) and before the next fault
        until = min((t for t in onsets if t > planned.onset_s), default=math.inf)
        near = [
            i
            for i in performance
            if planned.onset_s - 2 * SCRAPE_S <= _onset_s(world, i.onset_time_unix_nano) < until - 2 * SCRAPE_S
        ]
        top = [i for i in near if i.causes and planned.truth.matches_cause(i.causes[0].entity, i.causes[0].signal)]
        ranks = [c.rank for i in near for c in i.causes if planned.truth.matches_cause(c.entity, c.signal)]
        results.append(FaultResult(planned, top[-1] if top else None, min(ranks) if ranks else None))
        explained.update(i.id for i in top)
    unexplained = [
        i
        for i in performance
        if i.id not in explained
        and not (i.causes and any(p.truth.matches_cause(i.causes[0].entity, i.causes[0].signal) for p in world.planned))
    ]
    return results, unexplained, waste


class Follower:
    """Reads the stack's state from the RCA service's API (what any client of it could show)."""

    def __init__(self, world: World, endpoints: Endpoints, stack: Stack, started: float) -> None:
        from factorylens.rca_service.client import connect

        self.world = world
        self.endpoints = endpoints
        self.stack = stack
        self.stub = connect(endpoints.rca)
        self.started = started  # time.monotonic() when the demo began
        self._last: tuple[float, int, int] | None = None
        self._rates = (0.0, 0.0)
        self._grid_at = 0.0
        self._grid: dict[str, list[str]] = {}
        self._jobs: list[JobRow] = []
        self._status: list[Any] = []  # the GPUs' hw.status and hw.gpu.utilization series (SeriesInfo)
        self._util: list[Any] = []
        self.incidents: list[Any] = []

    # ---- reads -----------------------------------------------------------------------------------
    def poll(self) -> Snapshot:
        from factorylens.rca_service.api.v1 import rca_pb2
        from factorylens.rca_service.client import list_incidents

        health = self.stub.Health(rca_pb2.HealthRequest(), timeout=RPC_TIMEOUT_S)
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            dt = now - self._last[0]
            self._rates = (
                (health.points_accepted - self._last[1]) / dt,
                (health.spans_accepted - self._last[2]) / dt,
            )
        self._last = (now, health.points_accepted, health.spans_accepted)
        self.incidents = list(list_incidents(self.stub, timeout=RPC_TIMEOUT_S))
        if now - self._grid_at >= GRID_EVERY_S:
            self._grid_at = now
            self._grid = self._read_grid()
            self._jobs = self._read_jobs()
        services = [(c.name, c.process.poll() is None) for c in self.stack.children]
        return Snapshot(
            self.world.sim_now(),
            services,
            self._rates[0],
            self._rates[1],
            health.series,
            self._grid,
            self._jobs,
            self.incidents,
        )

    def _series(self, metric: str, entity: str = "") -> list[Any]:
        from factorylens.rca_service.api.v1 import rca_pb2
        from factorylens.rca_service.client import list_series

        request = rca_pb2.ListSeriesRequest(metric=metric, entity=entity)
        return list(list_series(self.stub, request, timeout=RPC_TIMEOUT_S))

    def _latest(self, ids: list[str], since_s: float, view: str = "") -> dict[str, tuple[Any, list[float]]]:
        from factorylens.rca_service.api.v1 import rca_pb2

        if not ids:
            return {}
        answer = self.stub.QuerySeries(
            rca_pb2.QuerySeriesRequest(series_ids=ids, start_time_unix_nano=int(since_s * 1e9), view=view),
            timeout=RPC_TIMEOUT_S,
        )
        return {s.info.id: (s.info, list(s.values)) for s in answer.series}

    def _read_grid(self) -> dict[str, list[str]]:
        """Per host, each GPU: failed or degraded (``hw.status``), else busy or idle (utilization), and
        ``cause`` where an open incident's first cause is that GPU."""
        gpus = sum(len(h.gpus) for h in self.world.run.cluster.hosts)
        if len({_gpu_of(s) for s in self._util}) < gpus:  # listed again until every GPU has reported
            self._status = self._series(Metrics.HW_STATUS, "gpu:*")
            self._util = self._series(Metrics.HW_GPU_UTILIZATION, "gpu:*")
        since = self.world.start_time + self.world.sim_now() - 3 * SCRAPE_S
        busiest: dict[str, float] = {}  # a GPU's utilization series (per engine): the busiest engine counts
        for info, values in self._latest([s.id for s in self._util], since).values():
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                busiest[_gpu_of(info)] = max(busiest.get(_gpu_of(info), 0.0), finite[-1])
        state = {gpu: "busy" if value >= 0.3 else "idle" for gpu, value in busiest.items()}
        for info, values in self._latest([s.id for s in self._status], since).values():
            gpu = _gpu_of(info)
            hw_state = _attr(info.attributes, Attributes.HW_STATE)
            if values and values[-1] >= 1 and hw_state in ("degraded", "failed", "predicted_failure"):
                state[gpu] = "failed" if hw_state == "failed" else "degraded"
        for incident in self.incidents:
            if incident.state == "open" and incident.causes and incident.causes[0].entity.startswith("gpu:"):
                state[incident.causes[0].entity[4:]] = "cause"
        grid: dict[str, list[str]] = {}
        for host in self.world.run.cluster.hosts:
            grid[host.name] = [state.get(gpu.uuid, "") for gpu in host.gpus]
        return grid

    def _read_jobs(self) -> list[JobRow]:
        """Per job, its slowest rank's latest step time and what the service's baseline expected of it."""
        from factorylens.rca_service.api.v1 import rca_pb2

        series = self._series(Metrics.FACTORYLENS_TRAIN_STEP_DURATION)
        since = self.world.start_time + self.world.sim_now() - 6 * SCRAPE_S
        by_job: dict[str, list[tuple[Any, float]]] = {}
        for info, values in self._latest([s.id for s in series], since).values():
            finite = [x for x in values if math.isfinite(x)]
            if finite:
                by_job.setdefault(_attr(info.resource, Attributes.FACTORYLENS_JOB_ID), []).append((info, finite[-1]))
        rows = []
        for job, ranks in sorted(by_job.items()):
            info, slowest = max(ranks, key=lambda r: r[1])
            request = rca_pb2.GetBaselineRequest(series_id=info.id, start_time_unix_nano=int(since * 1e9))
            baseline = self.stub.GetBaseline(request, timeout=RPC_TIMEOUT_S)
            expected = [x for x in baseline.expected if math.isfinite(x)]
            team = _attr(info.resource, Attributes.FACTORYLENS_TEAM)
            rows.append(JobRow(job, team, len(ranks), slowest, expected[-1] if expected else math.nan))
        return rows

    # ---- the end ---------------------------------------------------------------------------------
    def outcome(self) -> Outcome:
        from factorylens.cost_report import ReportError, from_service

        try:
            self.poll()
        except grpc.RpcError:  # the service may be gone after an interrupt: summarise what was read
            pass
        reached = min(self.world.sim_now(), self.world.duration_s)
        faults, unexplained, waste = judge(self.world, self.incidents, reached)
        cost, error = None, ""
        end = self.world.start_time + reached
        try:
            cost = from_service(self.endpoints.rca, self.world.start_time, end, "team", timeout_s=30.0)
        except ReportError as exc:
            error = str(exc)
        return Outcome(
            faults,
            self.incidents,
            unexplained,
            waste,
            cost,
            error,
            reached,
            time.monotonic() - self.started,
            self.world.gpu_names,
            self._steadiness(),
        )

    def _steadiness(self) -> dict[str, float]:
        """Per job, the share of its ranks' scrapes whose mean step time is within 10 % of the rank's
        median: how predictable its pace was over the run (the service's seasonal predictability needs
        more history than a demo run has)."""
        try:
            series = self._series(Metrics.FACTORYLENS_TRAIN_STEP_DURATION)
            data = self._latest([s.id for s in series], self.world.start_time)
        except grpc.RpcError:
            return {}
        steady: dict[str, list[int]] = {}
        for info, values in data.values():
            finite = [v for v in values if math.isfinite(v)]
            if not finite:
                continue
            median = sorted(finite)[len(finite) // 2]
            counts = steady.setdefault(_attr(info.resource, Attributes.FACTORYLENS_JOB_ID), [0, 0])
            counts[0] += sum(1 for v in finite if abs(v - median) <= 0.1 * median)
            counts[1] += len(finite)
        return {job: within / total for job, (within, total) in sorted(steady.items()) if total}


def _gpu_of(info: Any) -> str:
    return _attr(info.resource, Attributes.HW_ID) or info.entity.partition(":")[2]


def _attr(attributes: Any, key: str) -> str:
    return next((a.value for a in attributes if a.key == key), "")


# ---- rendering ---------------------------------------------------------------------------------------
def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 3600):d}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if math.isfinite(value) else "—"


def first_cause(world: World, incident: Any) -> str:
    if not incident.causes:
        return "causes being ranked"
    cause = incident.causes[0]
    return f"{world.name_of(cause.entity)}: {cause.signal.split('{')[0]}"


def summary_lines(world: World, outcome: Outcome) -> list[str]:
    """The end of the run as text (both views print it)."""
    lines = [
        f"== summary: {_clock(outcome.sim_s)} simulated in {outcome.wall_s:.0f} s; "
        f"{outcome.matched}/{len(outcome.faults)} injected faults named as the top cause of their incident; "
        f"{len(outcome.unexplained)} incident(s) no fault explains",
    ]
    for result in outcome.faults:
        p = result.planned
        if result.incident is not None:
            verdict = f"MATCHED by {result.incident.id}"
        elif result.best_rank is not None:
            verdict = f"MISSED (ranked #{result.best_rank})"
        else:
            verdict = "MISSED"
        lines.append(f"  fault at {_clock(p.onset_s)} [{p.domain}] {p.name}: {p.what} — {verdict}")
    for incident in sorted(outcome.incidents, key=lambda i: i.onset_time_unix_nano):
        lines.append("")
        kind = "waste" if incident.kind == "waste" else ("unexplained" if incident in outcome.unexplained else "ok")
        onset = _clock(_onset_s(world, incident.onset_time_unix_nano))
        lines.append(f"incident {incident.id} [{incident.state}, {kind}] onset {onset}: {incident.title}")
        for cause in incident.causes[:3]:
            lines.append(
                f"  #{cause.rank} {cause.score:.2f} [{cause.domain}] {world.name_of(cause.entity)} — {cause.signal}"
            )
        if incident.causes:
            lines.append(f"     why: {incident.causes[0].explanation}")
    lines.append("")
    lines.extend(cost_lines(outcome))
    return lines


def cost_lines(outcome: Outcome) -> list[str]:
    report = outcome.cost
    if report is None:
        return [f"cost: not available ({outcome.cost_error})"]
    money = report.currency
    lines = [
        f"cost of the simulated {_clock(outcome.sim_s)} by team ({money}"
        + (", EXAMPLE list prices" if report.example_prices else "")
        + "):",
        f"  {'team':<20} {'GPU-h':>8} {'cost':>10} {'idle cost':>10} {'idle':>6} {'per 1M tokens':>14}",
    ]
    for team, totals in sorted(report.groups.items(), key=lambda kv: -kv[1].total_cost):
        per_token = f"{totals.cost_per_1m_tokens:.2f}" if totals.tokens else "—"
        idle = f"{totals.idle_ratio:.0%}" if math.isfinite(totals.idle_ratio) else "—"
        lines.append(
            f"  {team:<20} {totals.allocated_h:>8.2f} {totals.total_cost:>10.2f} {totals.idle_cost:>10.2f} "
            f"{idle:>6} {per_token:>14}"
        )
    if report.predictability:
        lines.append("predictability per workload (the service's seasonal baselines; 1 = fully predictable):")
        for job, score in sorted(report.predictability.items()):
            lines.append(f"  {job:<28} {score:.2f}")
    else:
        lines.append("predictability: the service's seasonal baselines need more history than this run has")
    if outcome.steadiness:
        lines.append("steadiness per job (share of scrapes with a step time within 10 % of the usual):")
        for job, share in outcome.steadiness.items():
            lines.append(f"  {job:<28} {share:.0%}")
    return lines


class PlainView:
    """Line-oriented: a status line every ``every_s`` of simulated time, each incident when it opens,
    changes its first cause or resolves."""

    def __init__(self, stream: TextIO, every_s: float = 60.0) -> None:
        self.stream = stream
        self.every_s = every_s
        self._next = 0.0
        self._seen: dict[str, tuple[str, str]] = {}
        self.world: World | None = None

    def say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, follower: Follower) -> None:
        self.world = follower.world
        self.say(
            f"stack up in {time.monotonic() - follower.started:.1f} s: "
            f"{', '.join(c.name for c in follower.stack.children)}; RCA service {follower.endpoints.rca}"
        )

    def update(self, snap: Snapshot) -> None:
        assert self.world is not None
        if snap.sim_s >= self._next:
            self._next = snap.sim_s + self.every_s
            jobs = ", ".join(f"{j.job} {_seconds(j.step_s)} (usual {_seconds(j.baseline_s)})" for j in snap.jobs)
            self.say(
                f"[{_clock(snap.sim_s)}] {snap.points_per_s:.0f} points/s, {snap.series} series; "
                f"{sum(1 for i in snap.incidents if i.state == 'open')} open incident(s); {jobs}"
            )
        for incident in reversed(snap.incidents):
            key = (incident.state, incident.causes[0].entity if incident.causes else "")
            if self._seen.get(incident.id) == key:
                continue
            self._seen[incident.id] = key
            self.say(
                f"[{_clock(snap.sim_s)}] incident {incident.id} {incident.state}: {first_cause(self.world, incident)}"
            )

    def finish(self, outcome: Outcome) -> None:
        assert self.world is not None
        for line in summary_lines(self.world, outcome):
            self.say(line)

    def close(self) -> None:
        self.stream.flush()


class RichView(PlainView):
    """In place: services, ingest rates, the GPU grid, the jobs and the open incidents, redrawn by
    ``rich.live.Live`` (the screen does not scroll); the summary is printed below it at the end."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        from rich.console import Console

        self.console = Console(file=stream)
        self.live: Any = None
        self._messages: list[str] = []

    def say(self, text: str) -> None:
        if self.live is None:
            self.console.print(text, highlight=False)
        else:
            self._messages = [*self._messages, text][-3:]

    def start(self, follower: Follower) -> None:
        from rich.live import Live

        self.world = follower.world
        self.live = Live(console=self.console, refresh_per_second=2, transient=False)
        self.live.start()
        self.say(f"stack up in {time.monotonic() - follower.started:.1f} s; RCA service {follower.endpoints.rca}")

    def update(self, snap: Snapshot) -> None:
        if self.live is not None:
            self.live.update(self.render(snap))

    def render(self, snap: Snapshot) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        assert self.world is not None
        world = self.world
        now = min(snap.sim_s, world.duration_s)
        head = Text(f"factorylens demo  simulated {_clock(now)} / {_clock(world.duration_s)}  ", style="bold")
        for name, up in snap.services:
            head.append(f"{name} ", style="green" if up else "red")
        head.append(f"\n{snap.points_per_s:,.0f} points/s  {snap.spans_per_s:,.0f} spans/s  {snap.series:,} series")
        legend = Text("GPUs  █ busy  ░ idle  ▓ degraded  X failed  ◆ first cause of an open incident", style="italic")
        grid = Table(show_header=False, box=None)
        for host, states in snap.grid.items():
            cells = Text(f"{host:<12}")
            for state in states:
                cells.append(STATE_CHAR[state] + " ", style=STATE_STYLE[state])
            grid.add_row(cells)
        jobs = Table(title="jobs", box=None)
        for column in ("job", "team", "ranks", "step (slowest rank)", "usual", ""):
            jobs.add_column(column)
        for j in snap.jobs:
            slow = j.step_s > 1.15 * j.baseline_s
            jobs.add_row(
                j.job,
                j.team,
                str(j.ranks),
                _seconds(j.step_s),
                _seconds(j.baseline_s),
                Text("slow", "red") if slow else "",
            )
        incidents = Table(title="incidents", box=None)
        for column in ("id", "state", "onset", "first cause"):
            incidents.add_column(column)
        for i in sorted(snap.incidents, key=lambda i: (i.state != "open", -i.onset_time_unix_nano))[:6]:
            incidents.add_row(
                i.id,
                Text(i.state, "red" if i.state == "open" else "green"),
                _clock(_onset_s(world, i.onset_time_unix_nano)),
                first_cause(world, i),
            )
        return Group(head, legend, grid, jobs, incidents, Text("\n".join(self._messages), style="dim"))

    def finish(self, outcome: Outcome) -> None:
        self.close()
        super().finish(outcome)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def make_view(plain: bool, stream: TextIO) -> PlainView:
    """``--plain`` or a stream that is no terminal: lines; else the live view."""
    if plain or not stream.isatty():
        return PlainView(stream)
    return RichView(stream)
