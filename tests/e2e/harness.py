"""Real processes for the end-to-end tests: rotel (the collector binary of the ``rotel`` package, with our
metrics processor loaded), the RCA service (``factorylens rca serve`` or its time-scaled launcher) and
Prometheus (Debian's 2.42), each on free 127.0.0.1 ports, with its output in a log file the assertions
quote. Every wait polls with a deadline; the ``processes`` fixture (conftest.py) stops whatever a test
started, also when it fails."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

from factorylens.collector.rotel import PACKAGED_ENV_FILE, read_env_file, rotel_command
from factorylens.rca_service.api.v1 import rca_pb2, rca_pb2_grpc
from factorylens.rca_service.client import list_series
from tests.conftest import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
ROTEL_PROCESSOR = REPO / "otel-config" / "rotel" / "normalize.py"
LOOPBACK = "127.0.0.1"
RETRY_INITIAL_BACKOFF_S = 0.2  # the issue: the collector's retry backoff ≤ 1 s in tests
RETRY_MAX_BACKOFF_S = 1.0
BATCH_TIMEOUT_MS = 100


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


class Managed:
    """One subprocess a test owns, its stdout and stderr appended to ``log``; ``start`` may be called
    again after ``kill``/``stop`` (a restart on the same ports)."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def command(self) -> tuple[list[str], Mapping[str, str] | None]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout_s: float = 60.0) -> Managed:
        argv, env = self.command()
        with self.log.open("ab") as out:
            out.write(f"---- start {self.starts + 1}: {' '.join(argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        self.starts += 1

        def up() -> bool:
            if self.popen is not None and self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            return self.ready()

        wait_until(up, timeout_s=timeout_s, interval_s=0.1, what=f"{self.name} to be ready")
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait for the process to end (a crash when SIGKILL)."""
        if self.alive:
            assert self.popen is not None
            self.popen.send_signal(sig)
            self.popen.wait(timeout=20)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; never raises (used at teardown)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class ProcessSet:
    """Everything a test started, stopped in reverse order at teardown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.members: list[Managed] = []
        self.cleanups: list[Callable[[], None]] = []

    def add(self, process: Managed) -> Any:
        self.members.append(process)
        return process

    def stop_all(self) -> None:
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        for process in reversed(self.members):
            process.stop()

    def logs(self) -> str:
        """The tail of every log, for an assertion message."""
        return "\n".join(f"==== {p.name} ({p.log})\n{p.log_tail(2500)}" for p in self.members)

    def wait(self, predicate: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
        """``wait_until``, with every process's log tail in the message when the deadline passes."""
        try:
            return wait_until(predicate, timeout_s=timeout_s, interval_s=interval_s, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None


class Rotel(Managed):
    """rotel-agent started by ``factorylens.collector.rotel_command`` from the committed ``otel-config/rotel.env``,
    with our metrics processor, a 100 ms batch and a 0.2-1 s retry backoff, exporting to ``exporter``."""

    def __init__(self, log: Path, exporter: str) -> None:
        super().__init__("rotel", log)
        self.exporter = exporter
        self.grpc_port, self.http_port = free_port(), free_port()

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    def command(self) -> tuple[list[str], Mapping[str, str] | None]:
        argv, env = rotel_command(
            f"{LOOPBACK}:{self.grpc_port}",
            f"{LOOPBACK}:{self.http_port}",
            f"http://{self.exporter}",
            settings=read_env_file(PACKAGED_ENV_FILE),
            metrics_processors=[ROTEL_PROCESSOR],
            retry_initial_backoff_s=RETRY_INITIAL_BACKOFF_S,
            retry_max_backoff_s=RETRY_MAX_BACKOFF_S,
            batch_timeout_ms=BATCH_TIMEOUT_MS,
        )
        return argv, env

    def ready(self) -> bool:
        return _port_open(self.grpc_port)


class RcaServer(Managed):
    """The RCA service as a process: ``factorylens rca serve`` (``scaled=None``), or the launcher whose
    analysis windows are divided by the simulation speed (``scaled=(speed, interval_s)``)."""

    def __init__(self, log: Path, data_dir: Path, scaled: tuple[float, float] | None = None) -> None:
        super().__init__("rca-service", log)
        self.data_dir = data_dir
        self.scaled = scaled
        self.port, self.metrics_port = free_port(), free_port()
        self._channel: grpc.Channel | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def command(self) -> tuple[list[str], Mapping[str, str] | None]:
        where = ["--listen", self.address, "--metrics-listen", f"{LOOPBACK}:{self.metrics_port}"]
        where += ["--data-dir", str(self.data_dir)]
        if self.scaled is None:
            argv = [sys.executable, "-m", "factorylens", "rca", "serve", *where]
        else:
            speed, interval = self.scaled
            argv = [sys.executable, "-m", "tests.e2e.scaled_service", *where]
            argv += ["--speed", str(speed), "--interval", str(interval)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACTORYLENS_RCA_")}
        return argv, env

    @property
    def api(self) -> rca_pb2_grpc.RcaServiceStub:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        return rca_pb2_grpc.RcaServiceStub(self._channel)

    def ready(self) -> bool:
        try:
            return bool(self.api.Health(rca_pb2.HealthRequest(), timeout=2).status)
        except grpc.RpcError:
            return False

    def metrics_page(self) -> str:
        url = f"http://{LOOPBACK}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def stop(self) -> None:
        super().stop()
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class Prometheus(Managed):
    """Prometheus 2.42 scraping ``jobs`` (name → ``host:port`` targets) every second into a temporary TSDB."""

    def __init__(self, directory: Path, jobs: Mapping[str, Iterable[str]]) -> None:
        super().__init__("prometheus", directory / "prometheus.log")
        binary = shutil.which("prometheus")
        assert binary, "Debian's prometheus is installed by `make test` (make system-deps)"
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        scrape = ", ".join(
            f"{{job_name: {name}, static_configs: [{{targets: [{', '.join(repr(t) for t in targets)}]}}]}}"
            for name, targets in jobs.items()
        )
        self.config = directory / "prometheus.yml"
        self.config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs: [{scrape}]\n"
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> tuple[list[str], Mapping[str, str] | None]:
        return [
            self.binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.directory / 'tsdb'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
        ], None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    def _api(self, path: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        return self._api("query", {"query": expr})

    def query_range(self, expr: str, start: float, end: float, step_s: float = 1.0) -> list[dict[str, Any]]:
        """A range query's matrix: ``[{"metric": labels, "values": [[t, "v"], ...]}, ...]``."""
        return self._api("query_range", {"query": expr, "start": str(start), "end": str(end), "step": str(step_s)})


# ---------------------------------------------------------------------------- deterministic senders


SEQUENCE_METRIC = "e2e.sequence"
LANE = "e2e.lane"


def sequence_request(
    seq: int, lanes: int, metric: str = SEQUENCE_METRIC
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """``lanes`` gauge points of ``metric``, one per lane, each with value ``seq``: a point is identified by
    ``(lane, seq)`` wherever it ends up."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.extend(
        [
            common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="e2e-sender")),
            common_pb2.KeyValue(key="host.name", value=common_pb2.AnyValue(string_value="e2e-host")),
        ]
    )
    metric_pb = resource_metrics.scope_metrics.add().metrics.add(name=metric, unit="1")
    now = time.time_ns()
    for lane in range(lanes):
        point = metric_pb.gauge.data_points.add(time_unix_nano=now, as_double=float(seq))
        point.attributes.add(key=LANE, value=common_pb2.AnyValue(int_value=lane))
    return request


@dataclass
class SequenceSender:
    """Sends :func:`sequence_request` ``seq`` = 0, 1, 2 … to a collector every ``period_s`` over plain OTLP/gRPC
    (the opentelemetry-proto stub), and counts a request's points only when the collector acknowledged it."""

    endpoint: str
    lanes: int = 10
    period_s: float = 0.02
    acked: set[tuple[int, int]] = field(default_factory=set)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> SequenceSender:
        self._thread = threading.Thread(target=self._run, name="e2e-sender", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        channel = grpc.insecure_channel(self.endpoint)
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        seq = 0
        while not self._stop.is_set():
            try:
                stub.Export(sequence_request(seq, self.lanes), timeout=5)
            except grpc.RpcError:
                with self._lock:
                    self.failures += 1
            else:
                with self._lock:
                    self.acked.update((lane, seq) for lane in range(self.lanes))
            seq += 1
            self._stop.wait(self.period_s)
        channel.close()

    def acknowledged(self) -> set[tuple[int, int]]:
        with self._lock:
            return set(self.acked)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)


def stored_points(api: rca_pb2_grpc.RcaServiceStub, metric: str = SEQUENCE_METRIC) -> list[tuple[int, int]]:
    """``(lane, value)`` of every stored point of ``metric``, read through the RCA API (duplicates kept)."""
    out: list[tuple[int, int]] = []
    for info in list_series(api, rca_pb2.ListSeriesRequest(metric=metric), timeout=10):
        lane = next(int(a.value) for a in info.attributes if a.key == LANE)
        response = api.QuerySeries(rca_pb2.QuerySeriesRequest(series_ids=[info.id], view="raw"), timeout=10)
        out += [(lane, int(v)) for v in response.series[0].values]
    return out


def attributes(items: Iterable[Any]) -> dict[str, str]:
    """An API message's ``Attribute`` list as a dict."""
    return {a.key: a.value for a in items}
