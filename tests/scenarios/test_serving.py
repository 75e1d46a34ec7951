"""The serving suite: the inference server's model (continuous batching, a finite KV cache, a GPU's
speed, a lost GPU, a restart), the fleet's telemetry as the store sees it (GenAI names on replica
entities joined to their GPUs, hosts and file systems, the SLO's p95 over five minutes), and the RCA
service on it: each serving fault's cause on top within a minute, load named as load, and the daily
load cycle alone opening nothing. (bench/scenarios.py scores the same over more seeds and sizes.)"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from factorylens import telemetry
from factorylens.instrumentation._serving_telemetry import ServingTelemetry
from factorylens.instrumentation.serving import RequestRecord, ServingConfig
from factorylens.rca_service.analysis import KpiRankingAnalyzer
from factorylens.rca_service.analysis._kpis import DEFAULT_KPI_METRICS, is_kpi
from factorylens.rca_service.ranking import topology_from_series
from factorylens.rca_service.store import SeriesStore, View
from factorylens.registry import Metrics
from factorylens.simulation import SERVING_CATALOG, SERVING_JOB, ServedModel, ServingRun, Traffic, ingest
from factorylens.simulation._otlp import MetricExport
from factorylens.simulation._serving_model import Replica

NS = 1_000_000_000
SEED = 0
OPENED_WITHIN_S = 60  # the target: onset to incident


def _replica(**traffic: float) -> Replica:
    return Replica(0, ServedModel(), Traffic(**traffic), np.random.default_rng(1))


def _serve(replica: Replica, seconds: float, rps: float, prompt_scale: float = 1.0, speed: float = 1.0, t0: float = 0):
    finished = []
    for k in range(int(seconds // 10)):
        finished += replica.step(t0 + 10 * k, t0 + 10 * (k + 1), rps, prompt_scale, speed)
    return finished


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def test_a_replica_batches_what_it_can_and_queues_the_rest():
    replica = _replica()
    calm = _serve(replica, 300, 3.0)
    assert replica.state.waiting < 1 and 5 < replica.state.running < replica.model.max_num_seqs
    calm_ttft = _p95([r.first_token_s - r.arrival_s for r in calm[-100:]])
    surged = _serve(replica, 120, 9.0, t0=300)  # three times the load: beyond its batch limit
    assert replica.state.running == pytest.approx(replica.model.max_num_seqs)
    assert replica.state.waiting > 50
    assert _p95([r.first_token_s - r.arrival_s for r in surged[-50:]]) > 20 * calm_ttft
    assert all(r.arrival_s <= r.scheduled_s <= r.first_token_s <= r.end_s for r in calm + surged)


def test_prompts_that_outgrow_the_kv_cache_preempt_and_a_slower_gpu_serves_slower():
    replica = _replica()
    _serve(replica, 300, 3.0)
    assert replica.state.kv_cache_usage < 0.2
    longer = _serve(replica, 120, 3.0, prompt_scale=6.0, t0=300)
    assert replica.state.kv_cache_usage == pytest.approx(1.0)
    assert sum(r.preemptions for r in longer) > 0

    def tpot(speed: float) -> float:
        served = _serve(_replica(), 300, 2.0, speed=speed)
        return _p95([(r.end_s - r.first_token_s) / (r.output_tokens - 1) for r in served if r.output_tokens > 1])

    assert tpot(0.5) > 1.8 * tpot(1.0)


def test_a_lost_replica_fails_what_it_gets_and_a_restarting_one_holds_requests_until_it_is_up():
    lost = _replica()
    _serve(lost, 60, 3.0)
    lost.lost = True
    failed = _serve(lost, 30, 3.0, t0=60)
    assert failed and all(r.error_type == "EngineDeadError" and r.first_token_s is None for r in failed)

    restarting = _replica()
    _serve(restarting, 60, 3.0)
    restarting.restart(60.0, 95.0)
    held = _serve(restarting, 90, 3.0, t0=60)
    assert not held and restarting.state.waiting > 200  # accepted, nothing served while it loads
    after = _serve(restarting, 30, 3.0, t0=150)
    assert after and max(r.first_token_s - r.arrival_s for r in after) > 30


def test_nonsense_traffic_or_models_are_refused_with_what_is_wrong():
    for bad in ({"peak_rps": -1.0}, {"prompt_tokens": 0.0}, {"trough_share": 1.5}):
        with pytest.raises(ValueError, match=r"traffic|trough_share"):
            Traffic(**bad)
    with pytest.raises(ValueError, match="served model"):
        ServedModel(kv_cache_tokens=0.0)
    with pytest.raises(ValueError, match="at least two GPUs"):
        ServingRun(None, hosts=1, gpus_per_host=1)
    with pytest.raises(ValueError, match="unknown serving fault"):
        ServingRun("gpu_power_cap")


def test_the_daily_cycle_peaks_in_the_afternoon():
    traffic = Traffic()
    midnight = 1_699_920_000.0
    shares = [traffic.diurnal(midnight + h * 3600) for h in range(24)]
    assert max(range(24), key=shares.__getitem__) == 15 and min(shares) == pytest.approx(traffic.trough_share, abs=0.01)


# ---- the fleet as the store sees it ------------------------------------------------------------------


@functools.cache
def _stored(fault: str | None, duration_s: float = 120.0) -> tuple[ServingRun, SeriesStore]:
    logging.getLogger("factorylens.receivers").setLevel(logging.ERROR)
    run = ServingRun(fault, seed=SEED, onset_s=60.0, duration_s=duration_s)
    now = [run.epoch_ns / NS]
    store = SeriesStore(clock=lambda: now[0])
    for ts, requests in run:
        now[0] = ts / NS
        ingest(store, requests)
    return run, store


def test_replicas_export_genai_signals_joined_to_their_gpu_host_and_file_systems():
    run, store = _stored(None)
    infos = list(store.infos().values())
    replicas = {i.entity for i in infos if i.entity.startswith("replica:")}
    assert replicas == {f"replica:{SERVING_JOB}/{n}" for n in range(len(run.replicas))}
    ttft = store.list_series(Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, entity=f"replica:{SERVING_JOB}/3")
    assert len(ttft) == 1 and ttft[0].default_view is View.P95
    assert ttft[0].resource["factorylens.job.id"] == SERVING_JOB and ttft[0].resource["host.name"] == "sim-node-0"
    assert "server.address" not in ttft[0].label  # which server it is, not what it measures
    topology = topology_from_series([(i.entity, i.resource, i.attributes) for i in infos])
    gpu = run.cluster.hosts[0].gpus[3].uuid
    edges = topology.edges
    assert edges[(f"replica:{SERVING_JOB}/3", f"gpu:{gpu}")] == "uses"
    assert edges[(f"replica:{SERVING_JOB}/3", "fs:sim-node-0//mnt/ckpt")] == "uses"
    assert edges[(f"job:{SERVING_JOB}", f"replica:{SERVING_JOB}/3")] == "contains"
    other_gpu = run.cluster.hosts[1].gpus[0].uuid
    assert (f"replica:{SERVING_JOB}/3", f"gpu:{other_gpu}") not in edges  # replicas do not wait for each other
    # the shared GPU shows both tenants, each with its share of the GPU's time
    shared = run.shared_gpu.uuid
    jobs = {
        i.attributes.get("factorylens.job.id")
        for i in infos
        if i.metric == "process.gpu.utilization" and i.entity == f"gpu:{shared}"
    }
    assert jobs == {SERVING_JOB, "embed-batch"}


def test_the_slo_kpis_are_time_to_first_token_time_per_output_token_and_failures():
    _, store = _stored(None)
    kpis = {
        i.label.split("{")[0]
        for i in store.infos().values()
        if i.entity.startswith("replica:") and is_kpi(i, DEFAULT_KPI_METRICS, True, ())
    }
    assert {
        Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
        Metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
        Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED,
    } == kpis
    finished = [
        i
        for i in store.list_series(Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED)
        if is_kpi(i, DEFAULT_KPI_METRICS, True, ())
    ]
    assert finished and all(i.attributes["factorylens.inference.finish_reason"] == "error" for i in finished)
    _, _, failures = store.query(finished[0].id, View.INCREASE)
    assert np.nansum(failures) == 0  # counted from zero before the first failure


def test_a_serving_latency_p95_reads_the_latest_requests_that_fill_its_tail():
    """One replica: 60 requests every 10 s. Its p95 is read over the latest 400 requests (20 in the tail;
    seven intervals): 15 slow ones in an interval are under 5 % of them and leave it fast, where ten
    seconds alone would jump to the slow bucket; 60 slow ones move it at once, and it is fast again once
    they are out of the latest 400."""
    reader = InMemoryMetricReader()
    provider = telemetry.make_meter_provider(Resource.create({"service.name": "srv"}), [reader])
    served = ServingTelemetry(ServingConfig(service_name="srv", provider="vllm"), provider.get_meter("t"))
    export = MetricExport(reader, 0, reuse=False)
    store = SeriesStore(clock=lambda: 0.0)

    def tick(k: int, slow: int) -> None:
        base = k * 10 * NS
        served.record_many(
            RequestRecord(base, base, base + int((2.0 if n < slow else 0.05) * NS), base + int(2 * NS), 100, 50)
            for n in range(60)
        )
        request = export.export((k + 1) * 10 * NS)
        assert request is not None
        store.ingest_metrics(request)

    for k in range(40):
        tick(k, 15 if k == 35 else 0)
    info = store.list_series(Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)[0]
    _, _, p95 = store.query(info.id, View.P95)
    assert np.nanmax(p95[30:]) < 0.1
    tick(40, 60)
    for k in range(41, 50):
        tick(k, 0)
    _, _, p95 = store.query(info.id, View.P95)
    assert p95[40] > 1.0
    assert p95[-1] < 0.1  # nine intervals later the slow sixty are out of the latest 400
    provider.shutdown()


# ---- the RCA service on the fleet ------------------------------------------------------------------------


def _reference_ns(run: ServingRun) -> int:
    """What a fault is timed from, as the bench times it: its onset, or for a slow weight load when a
    healthy load would have been done (before that it looks like any restart)."""
    return run.epoch_ns + int(run.bite_s * NS) if run.bite_s is not None else run.onset_unix_nano


def analyze(fault: str | None, seed: int = SEED, **kwargs: float) -> tuple[ServingRun, list, list]:
    """``(run, the incidents a minute after the onset (or the bite), every incident at the end)``."""
    logging.getLogger("factorylens.receivers").setLevel(logging.ERROR)
    run = ServingRun(fault, seed=seed, logs=True, **kwargs)
    now = [run.epoch_ns / NS]
    store = SeriesStore(clock=lambda: now[0])
    analyzer = KpiRankingAnalyzer()
    early: list = []
    for ts, requests in run:
        now[0] = ts / NS
        ingest(store, requests)
        analyzer.analyze(store, ts)
        if not early and ts >= _reference_ns(run) + OPENED_WITHIN_S * NS:
            early = analyzer.incidents()
    return run, early, analyzer.incidents()


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(SERVING_CATALOG))
def test_each_serving_fault_is_found_within_a_minute_and_load_is_named_as_load(fault):
    run, incidents, _ = analyze(fault)
    assert not [i for i in incidents if i.opened_unix_nano < run.onset_unix_nano], "an incident before the fault"
    after = sorted((i for i in incidents if i.causes), key=lambda i: i.opened_unix_nano)
    assert after, f"no incident within {OPENED_WITHIN_S} s of {fault}"
    top = after[0].causes[0]
    assert run.truth is not None and run.truth.matches_cause(top.entity, top.signal), [
        (c.entity, c.signal) for c in after[0].causes[:3]
    ]
    load = run.truth.domain == "load"
    assert ("More load, not a fault" in top.explanation) == load, top.explanation


@pytest.mark.slow
def test_the_daily_load_cycle_alone_opens_no_incident():
    """The steepest four hours of the cycle (the morning ramp: the load rises several-fold), scraped
    every minute: the rising load moves every replica's latency and occupancy, and nothing opens."""
    run, _, incidents = analyze(None, start_hour=5.0, duration_s=4 * 3600.0, scrape_interval_s=60.0)
    assert run.traffic.diurnal(run.start_time + 4 * 3600) > 3 * run.traffic.diurnal(run.start_time)
    assert incidents == [], [(i.title, [(c.entity, c.signal) for c in i.causes[:2]]) for i in incidents]
