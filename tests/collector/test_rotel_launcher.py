"""``factorylens collector``: rotel, the embedded default collector, set up from otel-config/rotel.env, and run for
real between the OpenTelemetry SDK and an in-process RCA service: without processors, with a Python processor that
imports factorylens (which works only when the launcher put this venv on the embedded interpreter's path), and with
the packaged normalize processor in front of a raw OTLP sink."""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import factorylens
from factorylens.collector import rotel as launcher
from factorylens.collector.rotel import (
    PACKAGED_ENV_FILE,
    RotelUnavailable,
    check_libpython,
    find_agent,
    missing_processors,
    read_env_file,
    rotel_command,
)

from ..conftest import free_port, wait_until
from ..otlp_sink import OtlpSink

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "factorylens", "collector", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_print_command_shows_rotel_with_the_packaged_settings_and_the_overrides():
    done = cli("--print-command", "--exporter-endpoint", "http://rca.example:4317")
    assert done.returncode == 0, done.stderr
    lines = [line.rstrip(" \\").strip() for line in done.stdout.splitlines()]
    assert lines[-1] == f"{find_agent()} start"
    settings = dict(line.split("=", 1) for line in lines[:-1])
    assert settings["ROTEL_OTLP_EXPORTER_ENDPOINT"] == "http://rca.example:4317"  # the option beats the file
    assert settings["ROTEL_OTLP_GRPC_ENDPOINT"] == "127.0.0.1:14317"  # from otel-config/rotel.env
    assert settings["ROTEL_OTLP_EXPORTER_COMPRESSION"] == "gzip"
    import factorylens.processors.rotel

    assert settings["ROTEL_OTLP_WITH_METRICS_PROCESSOR"] == factorylens.processors.rotel.__file__
    paths = settings["PYTHONPATH"].split(os.pathsep)
    assert str(ROOT) in paths and sysconfig.get_paths()["purelib"] in paths
    assert PACKAGED_ENV_FILE.resolve() == ROOT / "otel-config" / "rotel.env"


def test_environment_variables_beat_the_file_and_no_processors_drops_them():
    env = {**os.environ, "ROTEL_BATCH_TIMEOUT": "50ms"}
    done = cli("--print-command", "--no-processors", env=env)
    assert done.returncode == 0, done.stderr
    assert "ROTEL_BATCH_TIMEOUT=50ms" in done.stdout and "PROCESSOR" not in done.stdout


def test_a_missing_processor_file_is_a_clear_error(tmp_path):
    env_file = tmp_path / "rotel.env"
    env_file.write_text("ROTEL_OTLP_WITH_METRICS_PROCESSOR=nowhere/normalize.py\n")
    done = cli("--env-file", str(env_file))
    assert done.returncode == 2
    assert str(tmp_path / "nowhere" / "normalize.py") in done.stderr and "--no-processors" in done.stderr


def test_env_file_parsing(tmp_path):
    env_file = tmp_path / "conf" / "rotel.env"
    env_file.parent.mkdir()
    env_file.write_text(
        "# comment\n\nROTEL_OTLP_EXPORTER_ENDPOINT='http://a:1'\n"
        "export ROTEL_OTLP_WITH_METRICS_PROCESSOR=p/one.py, /abs/two.py\n"
    )
    assert read_env_file(env_file) == {
        "ROTEL_OTLP_EXPORTER_ENDPOINT": "http://a:1",
        "ROTEL_OTLP_WITH_METRICS_PROCESSOR": f"{tmp_path / 'conf' / 'p' / 'one.py'},/abs/two.py",
    }
    assert missing_processors(read_env_file(env_file)) == [str(tmp_path / "conf" / "p" / "one.py"), "/abs/two.py"]
    env_file.write_text("ROTEL_OK=1\nOTEL_NOT_ROTEL=2\n")
    with pytest.raises(ValueError, match=r"rotel.env:2"):
        read_env_file(env_file)


def test_rotel_command_layers_settings_arguments_and_extra_env(monkeypatch):
    monkeypatch.setenv("ROTEL_DEBUG_LOG", "metrics")  # inherited ROTEL_* do not leak into a test's collector
    argv, env = rotel_command(
        "127.0.0.1:1",
        None,
        "http://127.0.0.1:3",
        retry_initial_backoff_s=0.25,
        retry_max_backoff_s=1,
        batch_timeout_ms=100,
        settings={"ROTEL_OTLP_HTTP_ENDPOINT": "127.0.0.1:2", "ROTEL_OTLP_GRPC_ENDPOINT": "127.0.0.1:9"},
        extra_env={"ROTEL_BATCH_TIMEOUT": "10ms"},
    )
    assert argv == [str(find_agent()), "start"]
    assert env["ROTEL_OTLP_GRPC_ENDPOINT"] == "127.0.0.1:1" and env["ROTEL_OTLP_HTTP_ENDPOINT"] == "127.0.0.1:2"
    assert env["ROTEL_OTLP_EXPORTER_RETRY_INITIAL_BACKOFF"] == "250ms"
    assert env["ROTEL_OTLP_EXPORTER_RETRY_MAX_BACKOFF"] == "1000ms"
    assert env["ROTEL_BATCH_TIMEOUT"] == "10ms" and env["ROTEL_OTLP_EXPORTER_COMPRESSION"] == "gzip"
    assert "ROTEL_DEBUG_LOG" not in env and env["PATH"] == os.environ["PATH"]


def test_libpython_is_found_or_named_for_installation(monkeypatch):
    assert "libpython3" in check_libpython()  # rotel-agent links it; make test installs it
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(RotelUnavailable, match=rf"apt-get install lib{launcher.libpython_name()}"):
        check_libpython()


# ---------------------------------------------------------------------------- rotel, running

PROCESSOR = """\
import factorylens  # importable only through the PYTHONPATH the launcher sets


def process_metrics(resource_metrics):
    for scope_metrics in resource_metrics.scope_metrics:
        for metric in scope_metrics.metrics:
            if metric.name == "via.rotel":
                metric.name = "via.rotel." + factorylens.__name__
"""


@contextlib.contextmanager
def running_rotel(tmp_path: Path, exporter_endpoint: str, **options) -> Iterator[Callable[..., None]]:
    """rotel on free ports toward ``exporter_endpoint``; yields ``deliver(instrument, value, attributes, until)``,
    which exports one SDK metric to it until ``until()`` holds (rotel must stay up meanwhile)."""
    port = free_port()
    argv, env = rotel_command(
        f"127.0.0.1:{port}",
        f"127.0.0.1:{free_port()}",
        exporter_endpoint,
        retry_initial_backoff_s=0.2,
        retry_max_backoff_s=1,
        batch_timeout_ms=100,
        **options,
    )
    with open(tmp_path / "rotel.log", "w") as log:
        collector = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    exporter = OTLPMetricExporter(endpoint=f"127.0.0.1:{port}", insecure=True, timeout=5)

    def deliver(name: str, value: float, attributes: dict[str, str], until: Callable[[], object]) -> None:
        reader = InMemoryMetricReader()
        MeterProvider(metric_readers=[reader]).get_meter("t").create_gauge(name).set(value, attributes)

        def delivered() -> object:
            assert collector.poll() is None, (tmp_path / "rotel.log").read_text()
            exporter.export(reader.get_metrics_data())
            return until()

        wait_until(delivered, timeout_s=30, interval_s=0.3, what=f"{name} through rotel")

    try:
        yield deliver
    finally:
        exporter.shutdown()
        collector.terminate()
        collector.wait(10)


def test_rotel_forwards_sdk_metrics_to_the_rca_service(make_service, tmp_path):
    service = make_service()
    with running_rotel(tmp_path, f"http://{service.address}") as deliver:
        deliver("via.rotel", 3.0, {"hw.id": "GPU-r"}, lambda: service.store.list_series("via.rotel"))


def test_a_python_processor_in_rotel_imports_factorylens(make_service, tmp_path):
    check_libpython()
    processor = tmp_path / "rename.py"
    processor.write_text(PROCESSOR)
    service = make_service()
    renamed = f"via.rotel.{factorylens.__name__}"
    with running_rotel(tmp_path, f"http://{service.address}", metrics_processors=(processor,)) as deliver:
        deliver("via.rotel", 3.0, {"hw.id": "GPU-r"}, lambda: service.store.list_series(renamed))


def test_the_packaged_normalize_processor_runs_in_rotel(tmp_path):
    """otel-config/rotel.env's processor, seen from a raw OTLP sink: the names changed inside rotel."""
    check_libpython()
    (processor,) = read_env_file(PACKAGED_ENV_FILE)["ROTEL_OTLP_WITH_METRICS_PROCESSOR"].split(",")
    sink = OtlpSink()
    try:
        with running_rotel(tmp_path, sink.endpoint, metrics_processors=(processor,)) as deliver:
            deliver("DCGM_FI_DEV_GPU_UTIL", 55.0, {"UUID": "GPU-d"}, lambda: sink.metric_points("hw.gpu.utilization"))
        _, attributes, value = sink.metric_points("hw.gpu.utilization")[0]
        assert attributes["hw.id"] == "GPU-d" and value == pytest.approx(0.55)
        assert not sink.metric_points("DCGM_FI_DEV_GPU_UTIL")
    finally:
        sink.stop()
