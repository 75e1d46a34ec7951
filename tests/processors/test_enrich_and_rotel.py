"""enrich (jobs and teams on GPU series), the rotel adapter, and both processors on the RCA service's
ingest path."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from factorylens.processors import Assignment, EnrichConfig, GpuJobIndex, enrich_metrics
from factorylens.processors._normalize import string_attributes
from factorylens.registry import REGISTRY
from tests.processors.test_normalize import DCGM_LABELS, points, request_with


def gpu_request(**labels: str) -> ExportMetricsServiceRequest:
    return request_with([("hw.gpu.utilization", 0.5, {"hw.id": "GPU-1", **labels})], scope="ours")


def test_a_mapping_file_assigns_gpus_pods_and_teams(tmp_path: Path) -> None:
    mapping = tmp_path / "jobs.yaml"
    mapping.write_text(
        "gpus: {GPU-1: {job: llm-pretrain}}\n"
        "pods: {ml/trainer-0: {job: finetune-3, team: applied}}\n"
        "teams: {'llm-*': foundation}\n"
        "namespaces: {inference: serving}\n"
    )
    config = EnrichConfig.from_file(mapping)
    by_gpu = gpu_request()
    enrich_metrics(by_gpu, config)
    assert (
        points(by_gpu)[0][3].items() >= {"factorylens.job.id": "llm-pretrain", "factorylens.team": "foundation"}.items()
    )
    by_pod = gpu_request(**{"hw.id": "GPU-2", "k8s.pod.name": "trainer-0", "k8s.namespace.name": "ml"})
    enrich_metrics(by_pod, config)
    assert points(by_pod)[0][3]["factorylens.job.id"] == "finetune-3"
    assert points(by_pod)[0][3]["factorylens.team"] == "applied"
    by_namespace = gpu_request(**{"hw.id": "GPU-3", "k8s.pod.name": "vllm-0", "k8s.namespace.name": "inference"})
    enrich_metrics(by_namespace, config)
    assert points(by_namespace)[0][3]["factorylens.team"] == "serving"
    assert "factorylens.job.id" not in points(by_namespace)[0][3]


@pytest.mark.parametrize(
    "text, message",
    [
        ("gpus: [1, 2]\n", "gpus"),
        ("gpus: {GPU-1: {job: a, owner: b}}\n", "GPU-1"),
        ("colours: {}\n", "unknown keys"),
        ("- a\n", "expected a mapping"),
        ("gpus: {a: [\n", "cannot read"),
        ("teams: [llm]\n", "teams"),
        ("namespaces: {ml: {team: x}}\n", "namespaces"),
    ],
)
def test_a_bad_mapping_file_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    mapping = tmp_path / "jobs.yaml"
    mapping.write_text(text)
    with pytest.raises(ValueError, match=message):
        EnrichConfig.from_file(mapping)


def test_pod_labels_outside_the_allow_list_are_dropped_and_name_the_job() -> None:
    request = gpu_request()
    resource = request.resource_metrics[0].resource.attributes
    for key, value in {
        "k8s.pod.labels.job-name": "ddp-7",
        "k8s.pod.labels.team": "vision",
        "k8s.pod.labels.sha": "x",
    }.items():
        resource.add(key=key).value.string_value = value
    stats = enrich_metrics(request, EnrichConfig())
    attributes = string_attributes(resource)
    assert attributes["factorylens.job.id"] == "ddp-7" and attributes["factorylens.team"] == "vision"
    assert "k8s.pod.labels.sha" not in attributes and stats.labels_dropped == 1


def test_dropping_pod_labels_keeps_the_process_index_working() -> None:
    """Two disallowed pod labels on a GPU's resource, and the GPU's job learned from its processes."""
    index = GpuJobIndex()
    index.learn("GPU-1", Assignment("train-9", "core"))
    request = gpu_request()
    resource = request.resource_metrics[0].resource.attributes
    for key in ("k8s.pod.labels.sha", "k8s.pod.labels.rev"):
        resource.add(key=key).value.string_value = "x"
    stats = enrich_metrics(request, EnrichConfig(gpu_jobs_from_processes=True), index)
    assert stats.labels_dropped == 2 and not any(kv.key.startswith("k8s.pod.labels.") for kv in resource)
    assert points(request)[0][3]["factorylens.job.id"] == "train-9"


def test_device_series_get_the_job_of_the_process_only_when_asked() -> None:
    def traffic() -> ExportMetricsServiceRequest:
        return request_with(
            [
                ("hw.temperature", 70, {"hw.id": "GPU-1"}),
                (
                    "process.gpu.memory.usage",
                    1e9,
                    {"hw.id": "GPU-1", "process.pid": "42", "factorylens.job.id": "j1", "factorylens.team": "t"},
                ),
            ],
            scope="ours",
        )

    off = traffic()
    before = off.SerializeToString()
    enrich_metrics(off, EnrichConfig(), GpuJobIndex())
    assert off.SerializeToString() == before  # the default: a GPU's series never split by job
    on = traffic()
    index = GpuJobIndex()
    enrich_metrics(on, EnrichConfig(gpu_jobs_from_processes=True), index)
    temperature = points(on)[0][3]
    assert (temperature["factorylens.job.id"], temperature["factorylens.team"]) == ("j1", "t")
    assert index.get("GPU-1") == Assignment("j1", "t")


def test_the_index_is_bounded() -> None:
    index = GpuJobIndex(max_gpus=2)
    for gpu in ("a", "b", "c"):
        index.learn(gpu, Assignment(gpu))
    assert len(index) == 2 and index.get("a") is None and index.get("c") == Assignment("c")


# ---- the rotel adapter, over stand-ins with rotel_sdk's shape (see processors/rotel.py) ----------
class _Value:
    def __init__(self, value: Any) -> None:
        self.value = value


class KeyValue:
    def __init__(self, key: str, value: Any) -> None:
        self.key, self.value = key, _Value(value)

    new_string_value = new_int_value = new_double_value = new_bool_value = classmethod(  # type: ignore[assignment]
        lambda cls, key, value: cls(key, value)
    )


class NumberDataPointValue_AsDouble(tuple):
    @staticmethod
    def AsDouble(value: float) -> Any:
        return NumberDataPointValue_AsDouble((value,))

    @staticmethod
    def AsInt(value: int) -> Any:
        return NumberDataPointValue_AsInt((value,))


class NumberDataPointValue_AsInt(NumberDataPointValue_AsDouble):
    pass


class MetricData_Gauge:
    def __init__(self, points: list[Any]) -> None:
        self._0 = types.SimpleNamespace(data_points=points)


def rotel_batch(name: str, value: float, labels: dict[str, str]) -> Any:
    point = types.SimpleNamespace(
        time_unix_nano=1,
        value=NumberDataPointValue_AsDouble((value,)),
        attributes=[KeyValue(k, v) for k, v in labels.items()],
    )
    metric = types.SimpleNamespace(name=name, unit="", description="", data=MetricData_Gauge([point]))
    scope = types.SimpleNamespace(scope=types.SimpleNamespace(name=""), metrics=[metric])
    return types.SimpleNamespace(resource=types.SimpleNamespace(attributes=[]), scope_metrics=[scope])


def test_the_rotel_adapter_renames_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("rotel_sdk.open_telemetry.common.v1")
    module.KeyValue = KeyValue  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rotel_sdk.open_telemetry.common.v1", module)
    from factorylens.processors.rotel import process_metrics

    batch = rotel_batch("DCGM_FI_DEV_GPU_UTIL", 87.0, DCGM_LABELS)
    process_metrics(batch)
    metric = batch.scope_metrics[0].metrics[0]
    point = metric.data._0.data_points[0]
    assert (metric.name, metric.unit, point.value[0]) == ("hw.gpu.utilization", "1", pytest.approx(0.87))
    attributes = {kv.key: kv.value.value for kv in point.attributes}
    assert attributes["hw.id"] == "GPU-5fa3c8a0" and attributes["gpu.index"] == 3
    assert {kv.key: kv.value.value for kv in batch.resource.attributes} == {"host.name": "gpu-node-7"}
    untouched = rotel_batch("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", 65.0, DCGM_LABELS)
    process_metrics(untouched)  # needs new points: left for the service's pass
    assert untouched.scope_metrics[0].metrics[0].name == "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"


# ---- on the RCA service's ingest path ------------------------------------------------------------
def test_the_service_stores_dcgm_series_under_our_names_and_counts_unknown_fields(make_service, tmp_path: Path) -> None:
    import urllib.request

    import grpc

    from tests.rca.conftest import raw_export
    from tests.rca.otlp_builders import T0

    mapping = tmp_path / "jobs.yaml"
    mapping.write_text("gpus: {GPU-5fa3c8a0: {job: llm-pretrain, team: foundation}}\n")
    service = make_service(enrich_file=str(mapping))
    request = request_with(
        [("DCGM_FI_DEV_GPU_UTIL", 87, DCGM_LABELS), ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", 1, DCGM_LABELS)]
    )
    for metric in request.resource_metrics[0].scope_metrics[0].metrics:
        metric.gauge.data_points[0].time_unix_nano = T0
    raw_export(grpc.insecure_channel(service.address), "metrics")(request.SerializeToString(), timeout=10)
    [utilization] = service.store.list_series("hw.gpu.utilization")
    assert utilization.entity == "gpu:GPU-5fa3c8a0"
    assert utilization.resource["host.name"] == "gpu-node-7"
    assert utilization.attributes["factorylens.job.id"] == "llm-pretrain"
    assert service.store.query(utilization.id)[2][-1] == pytest.approx(0.87)
    assert service.store.list_series("DCGM_FI_DEV_VGPU_LICENSE_STATUS")
    assert service.metrics_server is not None
    page = urllib.request.urlopen(service.metrics_server.url, timeout=10).read().decode()
    name = REGISTRY.metric("factorylens.processors.unmapped").prometheus_name
    assert (
        f'{name}{{factorylens_producer="dcgm-exporter",factorylens_source_metric="DCGM_FI_DEV_VGPU_LICENSE_STATUS"}} 1'
        in page
    )


def test_a_gpu_that_changes_job_gets_the_new_job_on_its_dcgm_series() -> None:
    """The translation cache holds enriched label sets: it must not keep a GPU's old job."""
    from factorylens.processors import MetricsProcessors

    chain = MetricsProcessors(EnrichConfig(gpu_jobs_from_processes=True))

    def scrape(job: str) -> ExportMetricsServiceRequest:
        request = request_with([("DCGM_FI_DEV_GPU_UTIL", 50, DCGM_LABELS)])
        process = request.resource_metrics[0].scope_metrics[0].metrics.add(name="process.gpu.memory.usage")
        point = process.gauge.data_points.add(time_unix_nano=1, as_double=1.0)
        for key, value in (("hw.id", DCGM_LABELS["UUID"]), ("factorylens.job.id", job)):
            point.attributes.add(key=key).value.string_value = value
        return request

    for job in ("job-1", "job-2", "job-1"):
        request = scrape(job)
        chain.process(request)
        [utilization] = [a for name, _, _, a, _ in points(request) if name == "hw.gpu.utilization"]
        assert utilization["factorylens.job.id"] == job


def test_the_fan_out_forgets_a_hosts_only_job_once_it_ended() -> None:
    from factorylens.processors import HostFanOut

    fan_out = HostFanOut(forget_after_s=300)

    def host_request(at_s: int, job: str | None) -> ExportMetricsServiceRequest:
        request = ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        rm.resource.attributes.add(key="host.name").value.string_value = "node-1"
        metrics = rm.scope_metrics.add().metrics
        cpu = metrics.add(name="system.cpu.utilization").gauge.data_points.add(time_unix_nano=at_s * 10**9)
        cpu.as_double = 0.5
        if job:
            process = metrics.add(name="process.gpu.utilization").gauge.data_points.add(time_unix_nano=at_s * 10**9)
            process.attributes.add(key="factorylens.job.id").value.string_value = job
        return request

    assert fan_out.metrics(host_request(0, "train-1")).copies == 1
    assert fan_out.metrics(host_request(200, None)).copies == 1  # seen 200 s ago: still on the host
    stats = fan_out.metrics(host_request(400, None))  # 400 s without it: the job ended
    assert stats.copies == 0 and stats.points_unrouted == 1 and fan_out.jobs_on("node-1") == ()


def test_the_cost_usage_counters_get_the_team_of_their_job(tmp_path: Path) -> None:
    """A job's GPU time is charged to its team even when its processes do not say the team."""
    config = EnrichConfig(teams=(("llm-*", "foundation"),))
    request = request_with(
        [
            (
                "factorylens.gpu.allocation.time",
                10.0,
                {"hw.id": "GPU-1", "factorylens.job.id": "llm-7b", "factorylens.allocation.state": "allocated"},
            )
        ],
        scope="ours",
    )
    enrich_metrics(request, config)
    assert points(request)[0][3]["factorylens.team"] == "foundation"


def test_a_free_gpus_time_stays_without_a_job(tmp_path: Path) -> None:
    config = EnrichConfig(gpus={"GPU-1": Assignment("slurm-42", "physics")})
    request = request_with(
        [("factorylens.gpu.allocation.time", 10.0, {"hw.id": "GPU-1", "factorylens.allocation.state": "unallocated"})],
        scope="ours",
    )
    enrich_metrics(request, config)
    assert "factorylens.job.id" not in points(request)[0][3] and "factorylens.team" not in points(request)[0][3]
