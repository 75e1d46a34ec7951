"""``factorylens demo``: a whole simulated AI factory through the real stack, on one machine, no GPU.

Separate processes, as in production: the RCA service (``factorylens rca serve``), rotel (``factorylens
collector`` with the committed ``otel-config/rotel.env``), the simulated node agents of every host, and
the instrumented jobs (a training job across hosts, a smaller batch job of another team); notebooks hold
GPUs idle. The default scenario injects five faults of five domains minutes apart; the view follows the
service over its API, and the summary says for each incident whether it named the injected fault, and
what the run cost per team. Every process is stopped on exit, on Ctrl-C and when any of them fails.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the simulator needs numpy (the sim extra): the CLI builds its parsers without it
    from factorylens.demo.world import FactoryRun, PlannedFault

READY_TIMEOUT_S = 60.0
POLL_S = 1.0
STOP_GRACE_S = 10.0
STARTUP_S = 8.0  # the stack starts in about 7 s on a loaded 2-core machine
IDLE_NOTEBOOKS = "a notebook per host holds a GPU allocated but idle: idle cost, and a waste finding after 30 minutes"


class DemoError(RuntimeError):
    """The demo cannot go on (a process failed or did not start); the message says which and why."""


@dataclass
class DemoOptions:
    hosts: int = 4
    gpus_per_host: int = 8
    seed: int = 0
    scenario: str = ""  # a scored scenario file (docs/node-agent.md); default: five faults of five domains
    speed: float = 10.0
    duration_s: float | None = None  # simulated seconds; None: the scenario's length
    keep_running: bool = False
    plain: bool = False
    data_dir: str = ""  # default: a temporary directory, removed at the end
    report_dir: str = "demo-report"
    price_catalog: str = ""  # default: the EXAMPLE catalog (list prices, labelled as such)


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it; a process binding it next is expected to win)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    expected_exit: bool = False  # a world part ends by itself when its run is over

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class Stack:
    """The demo's processes: started in their own sessions (Ctrl-C reaches the demo, which stops them in
    order), their output in log files, all stopped by :meth:`stop`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str], *, expected_exit: bool = False) -> Child:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        child = Child(name, process, log_path, expected_exit)
        self.children.append(child)
        return child

    def check(self) -> None:
        """:class:`DemoError` when a process has died (or a world part failed)."""
        for child in self.children:
            code = child.process.poll()
            if code is None or (child.expected_exit and code == 0):
                continue
            raise DemoError(f"{child.name} exited with status {code}; its last lines:\n{child.tail()}")

    def wait_ready(self, what: str, ready: Callable[[], bool], timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise DemoError(f"{what} was not ready within {timeout_s:g} s")
            time.sleep(0.1)  # polling a port or an RPC, bounded by the deadline

    def stop(self) -> None:
        """SIGTERM in reverse order of start, then SIGKILL after a grace period; safe to call twice."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in reversed(self.children):
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(5)


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


@dataclass
class Endpoints:
    rca: str
    rca_metrics: str
    collector_grpc: str
    collector_http: str
    prometheus: str = ""  # empty: Debian's prometheus is not installed
    node_metrics: tuple[str, ...] = ()  # the node agents' /metrics, one per host


@dataclass
class World:
    """What the demo knows of the simulated factory it starts (built in this process, never run)."""

    run: FactoryRun
    planned: list[PlannedFault]
    duration_s: float
    start_time: float  # unix time of simulated second 0
    wall_start: float  # wall time when simulated second 0 is sent
    speed: float
    gpu_names: dict[str, str]  # hw.id -> "sim-node-1/gpu3"

    def sim_now(self) -> float:
        """Simulated seconds since the start, by the wall clock."""
        return (time.time() - self.wall_start) * self.speed

    def name_of(self, entity: str) -> str:
        """An entity in plain words: a GPU by host and index (its UUID shortened), others as they are."""
        kind, _, name = entity.partition(":")
        if kind == "gpu" and name in self.gpu_names:
            return f"GPU {self.gpu_names[name]} ({name[:12]}…)"
        if kind == "fs":
            host, _, mount = name.partition("/")
            return f"file system {mount} on {host}"
        if kind == "nic":
            host, _, port = name.partition("/")
            return f"fabric port {port} on {host}"
        if kind == "rank":
            return f"rank {name.rpartition('/')[2]} of {name.rpartition('/')[0]}"
        return f"{kind} {name}" if name else entity


def build_world(options: DemoOptions) -> World:
    from factorylens.demo.world import FactoryRun

    wall_start = time.time() + STARTUP_S  # simulated second 0: when the stack is up (the world catches up if later)
    probe = FactoryRun("agents", options.hosts, options.gpus_per_host, options.seed, 0.0, options.scenario)
    duration = options.duration_s if options.duration_s else probe.duration_s
    # the live part ends where the wall clock was when it began: every timestamp is real and in the past
    start_time = wall_start - duration
    names = {gpu.uuid: f"{host.name}/gpu{gpu.index}" for host in probe.cluster.hosts for gpu in host.gpus}
    return World(probe, probe.planned, duration, start_time, wall_start, options.speed, names)


def expected_conditions(model: Any) -> list[str]:
    """What the run shows on purpose and a reader might take for a fault: said once, at the start."""
    unsupported = [
        name
        for name, supported in (("fan speed", model.has_fan), ("encoder/decoder utilization", model.has_encoder))
        if not supported
    ]
    said = [IDLE_NOTEBOOKS]
    if unsupported:
        said.insert(
            0,
            f"the simulated {model.key}s report {' and '.join(unsupported)} as NotSupported, as real ones do: "
            "the node agents probe that once and leave those series out",
        )
    return said


def start_stack(options: DemoOptions, stack: Stack, world: World, data_dir: Path) -> Endpoints:
    from factorylens.cost_report import example_catalog_path
    from factorylens.demo.world import SCRAPE_S

    ports = {name: free_port() for name in ("rca", "rca_metrics", "grpc", "http")}
    ep = Endpoints(
        f"127.0.0.1:{ports['rca']}",
        f"127.0.0.1:{ports['rca_metrics']}",
        f"127.0.0.1:{ports['grpc']}",
        f"127.0.0.1:{ports['http']}",
    )
    interval = SCRAPE_S / options.speed
    # the service analyses one scrape behind the world's clock, so that the newest scrape has arrived
    anchor = f"{world.start_time - SCRAPE_S:.3f}@{world.wall_start:.3f}"
    stack.start(
        "rca-service",
        _python(
            "-m",
            "factorylens",
            "rca",
            "serve",
            "--listen",
            ep.rca,
            "--metrics-listen",
            ep.rca_metrics,
            "--data-dir",
            str(data_dir / "rca"),
            "--fsync",
            "interval",
            "--retention",
            str(max(world.duration_s, 3600.0) + 3600.0),
            "--max-future",
            "600",
            "--clock-anchor",
            anchor,
            "--clock-speed",
            str(options.speed),
            "--analysis-interval",
            f"{interval:.3f}",
            "--price-catalog",
            options.price_catalog or str(example_catalog_path()),
            "--cost-interval",
            "60",
        ),
    )
    from factorylens.rca_service.client import connect

    stub = connect(ep.rca)
    stack.wait_ready("the RCA service", lambda: _healthy(stub))
    stack.start(
        "collector",
        _python(
            "-m",
            "factorylens",
            "collector",
            "--grpc-endpoint",
            ep.collector_grpc,
            "--http-endpoint",
            ep.collector_http,
            "--exporter-endpoint",
            f"http://{ep.rca}",
        ),
    )
    stack.wait_ready("the collector (rotel)", lambda: port_open(ports["grpc"]))
    node_ports = [free_port() for _ in world.run.cluster.hosts]
    ep.node_metrics = tuple(f"127.0.0.1:{port}" for port in node_ports)
    ep.prometheus = start_prometheus(stack, data_dir, ep)
    common = [
        "--endpoint",
        ep.collector_grpc,
        "--hosts",
        str(options.hosts),
        "--gpus-per-host",
        str(options.gpus_per_host),
        "--seed",
        str(options.seed),
        "--speed",
        str(options.speed),
        "--wall-start",
        f"{world.wall_start:.3f}",
        "--start-time",
        f"{world.start_time:.3f}",
        "--duration",
        f"{world.duration_s:g}",
        *(["--scenario", options.scenario] if options.scenario else []),
    ]
    agents = ["--metrics-ports", ",".join(str(port) for port in node_ports)]
    for role, name, extra in (
        ("agents", "node-agents", agents),
        ("training", "job-training", []),
        ("batch", "job-batch", []),
    ):
        stack.start(name, _python("-m", "factorylens.demo.world", role, *common, *extra), expected_exit=True)
    return ep


def start_prometheus(stack: Stack, data_dir: Path, ep: Endpoints) -> str:
    """Debian's Prometheus scraping the RCA service's /metrics (findings, baselines, cost) and the node
    agents' (dcgm-exporter's names) into a TSDB in the data directory, when it is installed; its URL,
    else empty."""
    binary = shutil.which("prometheus")
    if binary is None:
        return ""
    port = free_port()
    config = data_dir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 5s, scrape_timeout: 4s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: factorylens-rca, static_configs: [{{targets: ['{ep.rca_metrics}']}}]}}\n"
        f"  - {{job_name: factorylens-node, static_configs: [{{targets: {list(ep.node_metrics)}}}]}}\n"
    )
    stack.start(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    stack.wait_ready("Prometheus", lambda: _http_ok(f"{url}/-/ready"))
    return url


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


def _healthy(stub: Any) -> bool:
    import grpc

    from factorylens.rca_service.api.v1 import rca_pb2

    try:
        stub.Health(rca_pb2.HealthRequest(), timeout=1.0)
    except grpc.RpcError:
        return False
    return True


def run_demo(
    options: DemoOptions, stream: TextIO = sys.stdout, on_started: Callable[[Stack], None] | None = None
) -> Any:
    """Start the stack, follow it until the scenario's end (or Ctrl-C), print the summary, stop the
    stack; returns the :class:`~factorylens.demo.view.Outcome` of the run. ``on_started`` sees the
    stack once every process runs (tests check they are all gone afterwards)."""
    import grpc

    from factorylens._extras import require

    require("demo", "demo")
    from factorylens.demo.view import Follower, make_view
    from factorylens.demo.world import SCRAPE_S

    if options.speed <= 0:
        raise DemoError("--speed must be positive")
    began = time.monotonic()
    data_dir = Path(options.data_dir or tempfile.mkdtemp(prefix="factorylens-demo-"))
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    stack = Stack(data_dir / "logs")
    main = threading.current_thread() is threading.main_thread()  # signal handlers can only be set there
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
    view = make_view(options.plain, stream)
    outcome = None
    try:
        world = build_world(options)
        view.say(
            f"factorylens demo: {world.run.hosts} hosts × {world.run.gpus_per_host} {world.run.cluster.model.key}s, "
            f"{len(world.planned)} faults, {world.duration_s / 60:.0f} simulated minutes at {options.speed:g}×"
        )
        for condition in expected_conditions(world.run.cluster.model):
            view.say(f"expected: {condition}")
        endpoints = start_stack(options, stack, world, data_dir)
        if on_started is not None:
            on_started(stack)
        follower = Follower(world, endpoints, stack, began)
        view.start(follower)
        try:
            while world.sim_now() < world.duration_s + 2 * SCRAPE_S:
                stack.check()
                try:
                    view.update(follower.poll())
                except grpc.RpcError as exc:  # a busy service answers late: the next poll tries again
                    view.say(f"the RCA service answered {exc.code().name}; retrying")
                time.sleep(POLL_S)  # the view's refresh period
        except KeyboardInterrupt:
            view.say("interrupted: summarising what ran so far")
        outcome = follower.outcome()
        view.finish(outcome)
        if options.report_dir:
            from factorylens.demo.report import write_report

            path = write_report(outcome, follower, Path(options.report_dir))
            view.say(f"report: {path.resolve()}")
        if options.keep_running:
            view.say(keep_running_text(endpoints, data_dir))
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    stack.check()
                    time.sleep(1.0)
    finally:
        view.close()
        stack.stop()
        if main:
            signal.signal(signal.SIGTERM, previous)
        if not options.data_dir and not options.keep_running:
            shutil.rmtree(data_dir, ignore_errors=True)
    return outcome


def _raise_interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def keep_running_text(endpoints: Endpoints, data_dir: Path) -> str:
    return (
        "the stack stays up until Ctrl-C:\n"
        f"  RCA service (OTLP gRPC + factorylens.rca.v1): {endpoints.rca}"
        f"   e.g. factorylens rca incidents --target {endpoints.rca}\n"
        f"  RCA service /metrics: http://{endpoints.rca_metrics}/metrics\n"
        + (
            f"  node agents /metrics: {', '.join(endpoints.node_metrics)} (up while the world runs)\n"
            if endpoints.node_metrics
            else ""
        )
        + f"  collector (rotel) OTLP: grpc {endpoints.collector_grpc}, http {endpoints.collector_http}\n"
        + (f"  Prometheus: {endpoints.prometheus}\n" if endpoints.prometheus else "")
        + f"  logs: {data_dir / 'logs'}\n"
        + "  Grafana: add a Prometheus data source at "
        + (endpoints.prometheus or "a Prometheus scraping the /metrics above")
        + ", then import dashboards/*.json"
    )
