"""The registry as the single source of truth, the package layout, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from factorylens.cli import main
from factorylens.receivers.gpu.config import GpuReceiverConfig
from factorylens.registry import REGISTRY, Instrument, Source, prometheus_name

ROOT = Path(__file__).resolve().parents[1]


def test_semconv_names_are_used_exactly():
    spec = {m.name: m for m in REGISTRY.metrics}
    assert spec["hw.gpu.utilization"].instrument is Instrument.GAUGE and spec["hw.gpu.utilization"].unit == "1"
    assert (
        spec["hw.gpu.memory.usage"].instrument is Instrument.UPDOWNCOUNTER and spec["hw.gpu.memory.usage"].unit == "By"
    )
    assert spec["hw.energy"].instrument is Instrument.COUNTER and spec["hw.energy"].unit == "J"
    assert spec["hw.errors"].unit == "{error}" and "error.type" in spec["hw.errors"].attributes
    assert spec["hw.status"].instrument is Instrument.UPDOWNCOUNTER
    assert spec["hw.gpu.io"].attributes == ("network.io.direction",)
    assert all(
        m.name.startswith("factorylens.")
        for m in REGISTRY.metrics
        if m.source is Source.FACTORYLENS and not m.name.startswith("hw.")
    )


def test_prometheus_names_follow_the_collector_translation():
    assert prometheus_name("hw.gpu.utilization", "1", Instrument.GAUGE) == "hw_gpu_utilization_ratio"
    assert prometheus_name("hw.energy", "J", Instrument.COUNTER) == "hw_energy_joules_total"
    assert prometheus_name("hw.errors", "{error}", Instrument.COUNTER) == "hw_errors_total"
    assert prometheus_name("hw.status", "1", Instrument.UPDOWNCOUNTER) == "hw_status"
    assert prometheus_name("hw.fan.speed_ratio", "1", Instrument.GAUGE) == "hw_fan_speed_ratio"
    assert len({m.prometheus_name for m in REGISTRY.metrics}) == len(REGISTRY.metrics)


def test_registry_rejects_undeclared_attributes():
    from factorylens.registry import Domain, MetricSpec, Registry

    with pytest.raises(ValueError, match="undeclared attributes"):
        Registry(
            metrics=(MetricSpec("x", Instrument.GAUGE, "1", "", Domain.GPU, Source.FACTORYLENS, ("nope",)),),
            attributes=REGISTRY.attributes,
            attribute_groups={},
            resource_attributes=(),
        )


def test_metrics_command_prints_every_metric(capsys):
    assert main(["metrics"]) == 0
    out = capsys.readouterr().out
    for m in REGISTRY.metrics:
        assert m.name in out and m.prometheus_name in out
    assert main(["metrics", "--format", "json", "--domain", "self"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {m.name for m in REGISTRY.metrics if m.domain.value == "self"}


def test_gpu_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["gpu", "--help"])
    out = capsys.readouterr().out
    flags = {
        "backend": "--backend",
        "collection_interval_s": "--collection-interval",
        "otlp": "--otlp",
        "prometheus_port": "--prometheus-port",
        "prometheus_host": "--prometheus-host",
        "prometheus_bearer_token_file": "--prometheus-bearer-token-file",
        "prometheus_tls_cert": "--prometheus-tls-cert",
        "prometheus_tls_key": "--prometheus-tls-key",
        "console": "--console",
        "duration_s": "--duration",
        "process_metrics": "--no-process-metrics",
        "max_processes_per_gpu": "--max-processes-per-gpu",
        "proc_root": "--proc-root",
        "sys_root": "--sys-root",
        "host_metrics": "--no-host-metrics",
        "storage_metrics": "--no-storage-metrics",
        "fabric_metrics": "--no-fabric-metrics",
        "discovery_retry_interval_s": "--discovery-retry-interval",
        "event_wait_ms": "--event-wait",
        "sim_hosts": "--sim-hosts",
        "sim_gpus_per_host": "--sim-gpus-per-host",
        "sim_model": "--sim-model",
        "sim_mig": "--sim-mig",
        "sim_seed": "--sim-seed",
        "sim_speed": "--sim-speed",
        "scenario": "--scenario",
        "shard_by_job": "--shard-by-job",
    }
    assert set(flags) == set(GpuReceiverConfig.option_names())
    for flag in flags.values():
        assert flag in out
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in out and "OTEL_METRIC_EXPORT_INTERVAL" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--collection-interval", "0"], "collection interval must be a positive"),
        (["--backend", "sim", "--sim-hosts", "0"], "1-1024 hosts"),
        (["--scenario", "x.yaml"], "needs the simulated backend"),
        (["--backend", "sim", "--scenario", "/nonexistent.yaml"], "cannot read scenario"),
        (["--prometheus-tls-cert", "/etc/hostname"], "needs both"),
        (["--proc-root", "/nonexistent"], "is not a directory"),
        (["--backend", "sim", "--sim-model", "L40S", "--sim-mig"], "no MIG support"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(args, message, capsys):
    assert main(["gpu", *args]) == 2
    assert message in capsys.readouterr().err


def test_simulated_cluster_runs_and_prints_a_live_table(tmp_path):
    scenario = tmp_path / "f.yaml"
    # gpu 0 runs the training job at full load whatever the time of day (gpu 1 serves a diurnal load,
    # under the cap at night)
    scenario.write_text(
        "faults: [{kind: power_cap, target: {host: sim-node-1, gpu: 0}, start: 0, params: {limit_fraction: 0.3}}]\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "factorylens",
            "gpu",
            "--backend",
            "sim",
            "--sim-hosts",
            "2",
            "--sim-gpus-per-host",
            "2",
            "--collection-interval",
            "0.2",
            "--duration",
            "1.5",
            "--console",
            "--scenario",
            str(scenario),
            "--event-wait",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "active faults: power_cap on host sim-node-1 gpu 0" in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.startswith("sim-node-1     0 ")]
    assert rows and "PWR" in rows[-1] and "210/ 210" in rows[-1]
    assert "llm-pretrain-7b" in out.stdout


def test_nvml_backend_without_a_gpu_stays_up_and_says_why(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "factorylens",
            "gpu",
            "--duration",
            "1",
            "--collection-interval",
            "0.2",
            "--console",
            "--event-wait",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "NVML is not available" in out.stderr
    assert "no GPUs visible" in out.stdout and "nvmlInit:" in out.stdout


def test_every_metric_names_the_component_that_emits_it():
    from factorylens.registry import COMPONENTS

    assert {m.component for m in REGISTRY.metrics} == set(COMPONENTS)
    assert {m.name for m in REGISTRY.emitted_by("rca-service")} >= {
        "factorylens.rca.ingest.accepted",
        "factorylens.anomaly.score",
    }


def test_docs_registry_table_is_the_generated_one(capsys):
    from factorylens.cli import main

    assert main(["metrics", "--format", "markdown"]) == 0
    table = capsys.readouterr().out.strip()
    page = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    assert table in page, "docs/metrics.md's registry table is stale: paste `factorylens metrics --format markdown`"
