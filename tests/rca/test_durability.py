"""kill -9 at any moment loses nothing that was acknowledged: the real CLI server, real clients."""

from __future__ import annotations

import random
import signal
import subprocess
import threading

import grpc
import pytest

from factorylens.rca_service.api.v1 import rca_pb2

from ..conftest import free_port, wait_until
from .conftest import api, raw_export, serve_command
from .otlp_builders import T0, gauge, metrics_request

pytestmark = pytest.mark.slow  # `make check` leaves these out; `make test` runs them

WRITERS = 4


def start_server(data_dir, port: int, fsync: str, log) -> subprocess.Popen:
    server = subprocess.Popen(
        serve_command(port, data_dir, "--fsync", fsync, "--snapshot-interval", "0.3", "--wal-segment-mb", "1"),
        stdout=log,
        stderr=log,
    )
    stub = api(grpc.insecure_channel(f"127.0.0.1:{port}"))

    def ready() -> bool:
        assert server.poll() is None, "server exited"
        try:
            return stub.Health(rca_pb2.HealthRequest(), timeout=1).status == rca_pb2.HealthResponse.SERVING
        except grpc.RpcError:
            return False

    wait_until(ready, timeout_s=60, what="RCA service up")
    return server


def stored_values(port: int) -> dict[str, set[int]]:
    stub = api(grpc.insecure_channel(f"127.0.0.1:{port}"))
    found: dict[str, set[int]] = {}
    for info in stub.ListSeries(rca_pb2.ListSeriesRequest(metric="durable")).series:
        writer = {a.key: a.value for a in info.attributes}["writer"]
        data = stub.QuerySeries(rca_pb2.QuerySeriesRequest(series_ids=[info.id])).series[0]
        found[writer] = {int(v) for v in data.values}
    return found


@pytest.mark.parametrize("fsync", ["always", "never"])
def test_kill_9_loses_no_acknowledged_point(tmp_path, fsync):
    port = free_port()
    data_dir = tmp_path / "data"
    acked: dict[str, set[int]] = {str(w): set() for w in range(WRITERS)}
    next_value = {str(w): 0 for w in range(WRITERS)}
    rejected = {str(w): 0 for w in range(WRITERS)}
    rng = random.Random(7)
    with open(tmp_path / "server.log", "w") as log:
        for round_ in range(3):
            server = start_server(data_dir, port, fsync, log)
            stop = threading.Event()

            def writer(name: str, stop: threading.Event = stop) -> None:
                send = raw_export(grpc.insecure_channel(f"127.0.0.1:{port}"), "metrics")
                while not stop.is_set():
                    first = next_value[name]
                    values = list(range(first, first + 20))
                    next_value[name] = first + 20
                    request = metrics_request(
                        [
                            gauge(
                                "durable",
                                [(T0 + v * 10**6, float(v)) for v in values],
                                {"writer": name, "pad": "x" * 64},
                            )
                        ]
                    )
                    try:
                        response = send(request.SerializeToString(), timeout=5)
                    except grpc.RpcError:
                        return  # the server died mid-request: not acknowledged, may or may not be stored
                    if response.partial_success.rejected_data_points:  # refused points are not acknowledged
                        rejected[name] += response.partial_success.rejected_data_points
                        continue
                    acked[name].update(values)

            threads = [threading.Thread(target=writer, args=(str(w),)) for w in range(WRITERS)]
            for t in threads:
                t.start()
            wanted = (round_ + 1) * 400
            wait_until(lambda wanted=wanted: sum(map(len, acked.values())) > wanted, what="writes acknowledged")
            if round_ == 1:  # recovery must also go through a snapshot plus the WAL after it
                wait_until(lambda: list((data_dir / "snapshots").glob("snapshot-*.pkl")), what="a snapshot")
            stop.wait(rng.uniform(0.2, 1.0))
            server.send_signal(signal.SIGKILL)
            server.wait(10)
            stop.set()
            for t in threads:
                t.join(10)
        server = start_server(data_dir, port, fsync, log)
        try:
            stored = stored_values(port)
            for name, values in acked.items():
                missing = values - stored.get(name, set())
                assert not missing, (
                    f"writer {name}: {len(missing)} acknowledged points lost, e.g. {sorted(missing)[:5]}"
                )
            assert sum(map(len, acked.values())) > 1200
            assert not any(rejected.values()), f"points refused in a partial success: {rejected}"
            assert list((data_dir / "snapshots").glob("snapshot-*.pkl")), "no snapshot was cut during the run"
        finally:
            server.terminate()
            server.wait(30)


def test_a_damaged_newest_snapshot_falls_back_without_losing_acknowledged_points(make_service, tmp_path):
    from factorylens.rca_service.store import View as StoreView

    data_dir = str(tmp_path / "fallback")
    service = make_service(data_dir=data_dir, metrics_listen="off")
    send = raw_export(grpc.insecure_channel(service.address), "metrics")
    for batch in range(3):
        send(
            metrics_request(
                [gauge("kept", [(T0 + (batch * 10 + i) * 10**6, float(batch * 10 + i)) for i in range(10)])]
            ).SerializeToString()
        )
        service.snapshot()
    service.stop()
    newest = sorted((tmp_path / "fallback" / "snapshots").glob("snapshot-*.pkl"))[-1]
    damaged = bytearray(newest.read_bytes())
    damaged[-5] ^= 0xFF
    newest.write_bytes(bytes(damaged))
    restarted = make_service(data_dir=data_dir, metrics_listen="off")
    sid = restarted.store.list_series("kept")[0].id
    assert restarted.store.query(sid, StoreView.RAW)[2].tolist() == [float(v) for v in range(30)]
    assert newest.with_suffix(".bad").exists()
