"""The demo's simulated AI factory, one part per process: ``python -m factorylens.demo.world ROLE``.

Every part runs the same deterministic world (the scenario harness's :class:`ScenarioRun`: a
simulated cluster, its node agents, an instrumented multi-host training job and a smaller batch job
of another team, notebooks that hold GPUs idle, serving replicas) and sends only its own share over
OTLP/gRPC to the collector: ``agents`` the node agents of every host (GPU, host, storage, fabric and
XID events), ``training`` the training job's ranks, ``batch`` the batch job. Sharing the world by
seed rather than over a socket keeps each part a plain OTLP sender, as a real node agent or rank is.

Time: tick ``t`` (simulated seconds from the start) is stamped ``start_time + t`` and sent at wall
time ``wall_start + t / speed``, so the RCA service, whose clock runs from the same anchor at the
same speed, sees it arrive as live telemetry.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub

from factorylens.gpus import peak_tflops
from factorylens.receivers.gpu.receiver import metrics_server_for
from factorylens.receivers.gpu.sim.node import PORTS
from factorylens.simulation import FaultSpec, Injected, ScenarioRun, Truth, WorkloadFault, load_scenario_file
from factorylens.simulation._run import (
    NEIGHBOUR_TEAM,
    TRAINING_TEAM,
    Request,
    export_all,
    scrape_node_agents,
    shut_down,
)
from factorylens.simulation._workload import (
    CHECKPOINT_EVERY_S,
    CHECKPOINT_FIRST_S,
    HEALTHY_MFU,
    HEALTHY_STEP_S,
    SAMPLES_PER_STEP,
    NeighbourWorkload,
)

ROLES = ("agents", "training", "batch")
SCRAPE_S = 10.0  # the harness's scrape interval: the analyzer's defaults are tuned to it
# When the faults begin (simulated seconds): ten minutes of normal running with two checkpoints first,
# none in the first minute after an onset, and each fault over (FAULT_S) and its incident resolved (about
# four minutes after) before the next begins. The last, the slow checkpoint file system, bites at the
# first checkpoint after its slot and begins CHECKPOINT_LEAD_S before it.
FAULT_ONSETS_S = (630.0, 1050.0, 1470.0, 1980.0, 2370.0)
FAULT_S = 120.0
CHECKPOINT_LEAD_S = 15.0
AFTER_LAST_S = 210.0  # the last incident opens and is re-ranked within this


@dataclass(frozen=True)
class PlannedFault:
    """One fault of the default scenario, in plain words for the view and the report."""

    name: str
    domain: str
    what: str
    onset_s: float
    truth: Truth


def default_faults(hosts: int, gpus_per_host: int, job_id: str, gpu_ids: tuple[tuple[str, ...], ...]) -> list[Any]:
    """The default scenario: five faults of five domains, minutes apart, each on its own host where
    there are enough (a GPU's cooling, a training rank's code, its input pipeline, a fabric port, the
    checkpoint file system); ``(sim faults, workload faults, planned)``."""
    n_train = max(1, round(gpus_per_host * 0.625))  # the cluster's placement: ranks on GPUs 0..n_train-1

    def host(i: int) -> int:
        return i % hosts

    def rank(h: int, g: int) -> int:
        return h * n_train + g % n_train

    def slot(i: int) -> float:
        return FAULT_ONSETS_S[i]

    # the slow file system bites at a checkpoint: the first due after its slot, started just before it
    k = math.ceil((slot(4) + CHECKPOINT_LEAD_S - CHECKPOINT_FIRST_S) / CHECKPOINT_EVERY_S)
    storage_s = CHECKPOINT_FIRST_S + k * CHECKPOINT_EVERY_S - CHECKPOINT_LEAD_S
    names = [f"sim-node-{h}" for h in range(hosts)]
    straggler, starved = rank(host(2), 1), rank(host(0), 2)
    hot_host, hot_gpu = host(1), 3 % n_train
    port_host, port = host(3), PORTS[1]
    ckpt_host = host(2)
    sim = [
        {
            "kind": "thermal_throttle",
            "target": {"host": hot_host, "gpu": hot_gpu},
            "start": slot(1),
            "duration": FAULT_S,
            "params": {"extra_celsius": 30.0},
        },
        {
            "kind": "ib_congestion",
            "target": {"host": port_host},
            "start": slot(3),
            "duration": FAULT_S,
            "params": {"port": port, "throughput_fraction": 0.25, "xmit_wait_per_s": 5.0e6},
        },
        {
            "kind": "slow_storage",
            "target": {"host": ckpt_host},
            "start": storage_s,
            "duration": 120.0,
            "params": {"mount": "/mnt/ckpt", "latency_factor": 8.0, "throughput_fraction": 0.125},
        },
    ]
    workload = [
        WorkloadFault("straggler", slot(0), FAULT_S, rank=straggler, factor=2.0),
        WorkloadFault("input_starvation", slot(2), FAULT_S, rank=starved, factor=3.5),
    ]
    planned = [
        PlannedFault(
            "straggler rank",
            "app",
            f"rank {straggler} of {job_id} computes 2× slower (a bad core binding); its GPU is healthy",
            slot(0),
            Truth(f"rank:{job_id}/{straggler}", "app", onset_s=slot(0)),
        ),
        PlannedFault(
            "thermal throttle",
            "gpu",
            f"GPU {hot_gpu} of {names[hot_host]} loses its cooling (+30 °C) and throttles",
            slot(1),
            Truth(f"gpu:{gpu_ids[hot_host][hot_gpu]}", "gpu", onset_s=slot(1)),
        ),
        PlannedFault(
            "data-loader stall",
            "data",
            f"rank {starved}'s input pipeline needs 3.5× longer per batch (a slow shard); its host is healthy",
            slot(2),
            Truth(f"rank:{job_id}/{starved}", "data", onset_s=slot(2)),
        ),
        PlannedFault(
            "congested fabric port",
            "network",
            f"port {port} of {names[port_host]} congested (25 % throughput)",
            slot(3),
            Truth(f"nic:{names[port_host]}/{port}", "network", onset_s=slot(3)),
        ),
        PlannedFault(
            "slow checkpoint file system",
            "storage",
            f"/mnt/ckpt of {names[ckpt_host]} 8× slower, just before a checkpoint",
            storage_s,
            Truth(f"fs:{names[ckpt_host]}//mnt/ckpt", "storage", onset_s=storage_s),
        ),
    ]
    return [sim, workload, planned]


class FactoryRun(ScenarioRun):
    """The demo's world: a :class:`ScenarioRun` of the default scenario (or a scored scenario file)
    whose ticks carry only one role's share, so that each process builds only what it sends."""

    def __init__(
        self,
        role: str,
        hosts: int,
        gpus_per_host: int,
        seed: int,
        start_time: float,
        scenario: str = "",
        metrics_ports: tuple[int, ...] = (),
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        self.role = role
        self.metrics_ports = metrics_ports  # the node agents' /metrics, one port per host (dcgm-exporter's role)
        self.planned: list[PlannedFault] = []
        options: dict[str, Any] = {"benign_anomaly": False, "logs": role == "agents", "start_time": start_time}
        if scenario:
            scored = load_scenario_file(scenario)
            spec = scored.spec()
            hosts, gpus_per_host, seed = scored.hosts, scored.gpus_per_host, scored.seed
            options |= {"model": scored.model, "onset_s": scored.onset_s, "duration_s": scored.duration_s}
        else:
            spec = FaultSpec("demo", "demo", "", "five faults of five domains", (), self._inject)
            options |= {"onset_s": FAULT_ONSETS_S[0]}
        super().__init__(spec, seed, hosts, gpus_per_host, scrape_interval_s=SCRAPE_S, **options)
        if scenario:
            self.planned = [
                PlannedFault(t.entity, t.domain, f"{t.entity} ({t.domain})", self.truth_onset_s(t), t)
                for t in self.truths
            ]
        else:
            self.duration_s = max(p.onset_s for p in self.planned) + AFTER_LAST_S
            self.end_unix_nano = self.epoch_ns + int(self.duration_s * 1e9)

    def _inject(self, targets: Any, onset_s: float) -> Injected:
        sim, workload, planned = default_faults(self.hosts, self.gpus_per_host, targets.job_id, targets.gpu_ids)
        self.planned = planned
        return Injected(sim, workload, tuple(p.truth for p in planned))

    def ticks(self) -> Iterator[tuple[int, list[Request]]]:
        """As :meth:`ScenarioRun.ticks`, with this role's requests only."""
        if self._started:
            raise RuntimeError("a FactoryRun runs once")
        self._started = True
        agents = self.role == "agents"
        receiver, host_exports, log_exports = self._node_agents() if agents else (None, [], [])
        servers = []
        if receiver is not None:
            for pipeline, port in zip(receiver.pipelines, self.metrics_ports, strict=False):
                servers.append(metrics_server_for(pipeline, "127.0.0.1", port))
        peak = (peak_tflops(self.cluster.model.name) or 0.0) * 1e12
        instrumented: list[tuple[int | None, Any]] = []  # (rank index or None for the batch job, telemetry)
        if self.role == "training":
            flops = HEALTHY_MFU * peak * HEALTHY_STEP_S / SAMPLES_PER_STEP
            world = len(self.ranks)
            for index, info in enumerate(self.ranks):
                config = self._training_config(self.job_id, TRAINING_TEAM, info.rank, world, info.host, info.gpu, flops)
                instrumented.append((index, self._instrumented(config)))
        elif self.role == "batch":
            flops = 0.3 * peak * NeighbourWorkload.STEP_S / NeighbourWorkload.BURST_SAMPLES
            victim = self.cluster.hosts[self.targets.host_index]
            config = self._training_config(
                self.neighbour_job, NEIGHBOUR_TEAM, 0, 1, victim.name, self.neighbour_gpu, flops
            )
            instrumented.append((None, self._instrumented(config)))
        by_rank = {index: parts[0] for index, parts in instrumented if index is not None}
        batch = next((parts[0] for index, parts in instrumented if index is None), None)
        providers = [parts[1] for _, parts in instrumented]
        exports = host_exports + [parts[2] for _, parts in instrumented]
        try:
            for k in range(1, math.ceil(self.duration_s / self.scrape_interval_s - 1e-9) + 1):
                t = k * self.scrape_interval_s
                for index, record in self.workload.advance_to(t):
                    if index in by_rank:
                        by_rank[index].recorder.deliver(record)
                for record in self.neighbour.advance_to(t):
                    if batch is not None:
                        batch.recorder.deliver(record)
                self._now = t
                self.cluster.job_pace[self.job_id] = self.workload.pace(t)
                self.cluster.advance()
                if receiver is not None:
                    scrape_node_agents(receiver, True)
                for stepped, _, _ in (parts for _, parts in instrumented):
                    stepped.drain()
                now_ns = self._wall_ns()
                yield now_ns, export_all(exports, log_exports, now_ns)
        finally:
            for server in servers:
                server.shutdown()
            if receiver is not None:
                shut_down(receiver, providers)
            else:
                for provider in providers:
                    provider.shutdown()


def send(channel: grpc.Channel, requests: list[Request], timeout_s: float = 10.0) -> None:
    """Export one tick's requests; an error ends the process (the demo stops the whole stack)."""
    metrics, logs = MetricsServiceStub(channel), LogsServiceStub(channel)
    for request in requests:
        if isinstance(request, ExportLogsServiceRequest):
            logs.Export(request, timeout=timeout_s)
        else:
            metrics.Export(request, timeout=timeout_s)


def run(
    role: str, endpoint: str, speed: float, wall_start: float, start_time: float, duration_s: float, **world: Any
) -> int:
    """Send the role's ticks paced against the wall clock (ticks already due at once) for
    ``duration_s`` simulated seconds (0: the scenario's length)."""
    factory = FactoryRun(role, start_time=start_time, **world)
    if duration_s > 0:
        factory.duration_s = duration_s
    with grpc.insecure_channel(endpoint) as channel:
        for ts, requests in factory:
            due = wall_start + (ts / 1e9 - start_time) / speed
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)  # pacing to the simulated clock, not waiting for a condition
            send(channel, requests)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m factorylens.demo.world", description=__doc__.split("\n\n")[0])
    p.add_argument("role", choices=ROLES)
    p.add_argument("--endpoint", required=True, help="the collector's OTLP/gRPC HOST:PORT")
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--gpus-per-host", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenario", default="", help="a scored scenario file instead of the default scenario")
    p.add_argument("--speed", type=float, default=10.0)
    p.add_argument("--wall-start", type=float, required=True, help="wall time of simulated second 0")
    p.add_argument("--start-time", type=float, required=True, help="unix time stamped on simulated second 0")
    p.add_argument("--metrics-ports", default="", help="agents: comma-separated /metrics ports, one per host")
    p.add_argument("--duration", type=float, default=0.0, help="simulated seconds (default: the scenario's)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("factorylens.receivers").setLevel(logging.ERROR)  # the injected XIDs are the point
    try:
        return run(
            args.role,
            args.endpoint,
            args.speed,
            args.wall_start,
            args.start_time,
            args.duration,
            hosts=args.hosts,
            gpus_per_host=args.gpus_per_host,
            seed=args.seed,
            scenario=args.scenario,
            metrics_ports=tuple(int(p) for p in args.metrics_ports.split(",") if p),
        )
    except grpc.RpcError as exc:
        print(f"demo {args.role}: the collector at {args.endpoint} answered {exc.code().name}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
