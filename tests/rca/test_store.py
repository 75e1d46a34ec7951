"""The columnar store: every OTLP metric type becomes a usable series; resets, disorder, limits."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from factorylens.rca_service.store import SeriesKind, SeriesStore, StoreLimits, View, ViewError

from .otlp_builders import DELTA, T0, S, counter, gauge, histogram, logs_request, metrics_request, trace_request


def only(store: SeriesStore, metric: str):
    found = store.list_series(metric)
    assert len(found) == 1, [i.metric for i in store.list_series()]
    return found[0]


def test_gauge_points_keep_their_values_and_identity():
    store = SeriesStore()
    result = store.ingest_metrics(
        metrics_request(
            [
                gauge(
                    "hw.gpu.utilization", [(T0 + i * S, 0.1 * i) for i in range(5)], {"hw.id": "GPU-a", "gpu.index": 0}
                ),
                gauge("hw.gpu.utilization", [(T0, 0.9)], {"hw.id": "GPU-b", "gpu.index": 1}),
            ]
        )
    )
    assert (result.accepted, result.rejected) == (6, 0)
    series = {i.attributes["hw.id"]: i for i in store.list_series("hw.gpu.*")}
    assert set(series) == {"GPU-a", "GPU-b"}
    a = series["GPU-a"]
    assert (a.kind, a.domain, a.entity) == (SeriesKind.GAUGE, "gpu", "gpu:GPU-a")
    assert a.resource["host.name"] == "node-1"
    _, ts, values = store.query(a.id)
    assert ts.tolist() == [T0 + i * S for i in range(5)]
    assert np.allclose(values, [0.0, 0.1, 0.2, 0.3, 0.4])
    # attribute order does not make a new series
    store.ingest_metrics(
        metrics_request([gauge("hw.gpu.utilization", [(T0 + 9 * S, 1.0)], {"gpu.index": 0, "hw.id": "GPU-a"})])
    )
    assert len(store.list_series("hw.gpu.*")) == 2


def test_int_gauges_and_out_of_order_and_duplicate_points():
    store = SeriesStore()
    store.ingest_metrics(metrics_request([gauge("temp", [(T0 + 2 * S, 30), (T0, 10), (T0 + S, 20)])]))
    store.ingest_metrics(metrics_request([gauge("temp", [(T0 + S, 21)])]))  # a later write of the same instant
    _, ts, values = store.query(only(store, "temp").id)
    assert ts.tolist() == [T0, T0 + S, T0 + 2 * S]
    assert values.tolist() == [10.0, 21.0, 30.0]


def test_cumulative_counter_rate_survives_resets_by_start_time_and_by_drop():
    store = SeriesStore()
    start1, start2 = T0 - 100 * S, T0 + 25 * S
    points = [(start1, T0 + i * 10 * S, 100.0 + 50 * i) for i in range(3)]  # 100, 150, 200
    points += [(start2, T0 + 30 * S, 500.0)]  # restarted at T0+25 and already past the old value
    points += [(start2, T0 + 40 * S, 20.0)]  # dropped without a new start time: also a reset
    store.ingest_metrics(metrics_request([counter("requests", points)]))
    info = only(store, "requests")
    assert info.kind is SeriesKind.CUMULATIVE
    _, _, increase = store.query(info.id, View.INCREASE)
    assert math.isnan(increase[0])
    assert increase[1:].tolist() == [50.0, 50.0, 500.0, 20.0]
    _, _, rate = store.query(info.id, View.RATE)
    assert rate[1:].tolist() == [5.0, 5.0, 50.0, 2.0]
    _, _, raw = store.query(info.id, View.RAW)
    assert raw.tolist() == [100.0, 150.0, 200.0, 500.0, 20.0]


def test_delta_counter_adds_points_of_the_same_instant():
    store = SeriesStore()
    m = counter("bytes", [(T0, T0 + 10 * S, 100.0), (T0 + 10 * S, T0 + 20 * S, 300.0)], temporality=DELTA)
    store.ingest_metrics(metrics_request([m]))
    store.ingest_metrics(metrics_request([counter("bytes", [(T0 + 10 * S, T0 + 20 * S, 50.0)], temporality=DELTA)]))
    info = only(store, "bytes")
    assert info.kind is SeriesKind.DELTA
    _, _ts, increase = store.query(info.id, View.INCREASE)
    assert increase.tolist() == [100.0, 350.0]
    _, _, rate = store.query(info.id, View.RATE)
    assert math.isnan(rate[0]) and rate[1] == 35.0


def test_updown_sum_is_a_level_and_rejects_rate_views():
    store = SeriesStore()
    store.ingest_metrics(
        metrics_request([counter("queue", [(T0, T0 + S, 5.0), (T0, T0 + 2 * S, 3.0)], monotonic=False)])
    )
    info = only(store, "queue")
    assert info.kind is SeriesKind.UPDOWN
    assert store.query(info.id)[2].tolist() == [5.0, 3.0]
    with pytest.raises(ViewError):
        store.query(info.id, View.RATE)


def test_explicit_histogram_gives_interval_mean_count_and_quantiles():
    store = SeriesStore()
    bounds = [0.1, 0.2, 0.4]
    # cumulative: interval 1 adds 10 observations in (0.1, 0.2]; interval 2 adds 10 in (0.2, 0.4]
    store.ingest_metrics(
        metrics_request(
            [
                histogram(
                    "latency",
                    [
                        (T0, T0 + 10 * S, bounds, [0, 0, 0, 0], 0.0),
                        (T0, T0 + 20 * S, bounds, [0, 10, 0, 0], 1.5),
                        (T0, T0 + 30 * S, bounds, [0, 10, 10, 0], 4.5),
                    ],
                )
            ]
        )
    )
    info = only(store, "latency")
    _, _, mean = store.query(info.id, View.MEAN)
    assert math.isnan(mean[0])  # no interval before the first cumulative point
    assert mean[1:].tolist() == pytest.approx([0.15, 0.3])
    _, _, count = store.query(info.id, View.COUNT)
    assert count[1:].tolist() == pytest.approx([1.0, 1.0])
    _, _, p50 = store.query(info.id, View.P50)
    assert p50[1] == pytest.approx(0.15) and p50[2] == pytest.approx(0.3)
    _, _, p99 = store.query(info.id, View.P99)
    assert 0.39 < p99[2] <= 0.4


def test_a_histogram_read_from_a_time_takes_its_first_increase_from_the_point_before_and_order_does_not_matter():
    """A read of recent points costs what they are, not the history (the analyzer reads every tick), yet the
    first of them is still an increase over the point before; points that arrive out of order read the same."""
    bounds = [0.1, 0.2, 0.4]
    points = [(T0, T0 + (10 + 10 * i) * S, bounds, [0, 10 * i, 0, 0], 1.5 * i) for i in range(8)]
    in_order, shuffled = SeriesStore(), SeriesStore()
    in_order.ingest_metrics(metrics_request([histogram("latency", points)]))
    for chunk in (points[5:], points[:2], points[2:5]):
        shuffled.ingest_metrics(metrics_request([histogram("latency", chunk)]))
    for store in (in_order, shuffled):
        _, ts, count = store.query(only(store, "latency").id, View.COUNT, start_ns=T0 + 60 * S)
        assert ts.tolist() == [T0 + (10 + 10 * i) * S for i in (5, 6, 7)]
        assert count.tolist() == pytest.approx([1.0, 1.0, 1.0])  # 10 more in each 10 s, the first one too


def test_a_histogram_born_with_its_first_observation_keeps_it_and_an_old_one_does_not():
    store = SeriesStore()
    bounds = [10.0, 30.0]
    # a job's first checkpoint (20 s) creates the series 120 s after the job started
    store.ingest_metrics(
        metrics_request(
            [
                histogram(
                    "checkpoint",
                    [
                        (T0, T0 + 120 * S, bounds, [0, 1, 0], 20.0),
                        (T0, T0 + 130 * S, bounds, [0, 1, 0], 20.0),
                        (T0, T0 + 480 * S, bounds, [0, 2, 0], 41.0),
                    ],
                )
            ]
        )
    )
    _, _, mean = store.query(only(store, "checkpoint").id, View.MEAN)
    assert mean[0] == pytest.approx(20.0) and math.isnan(mean[1]) and mean[2] == pytest.approx(21.0)
    # a series running for a day before this store saw it: its first point's average is stale
    store.ingest_metrics(
        metrics_request(
            [
                histogram(
                    "old",
                    [
                        (T0 - 86_400 * S, T0, bounds, [5, 5, 0], 80.0),
                        (T0 - 86_400 * S, T0 + 10 * S, bounds, [5, 6, 0], 100.0),
                    ],
                )
            ]
        )
    )
    _, _, mean = store.query(only(store, "old").id, View.MEAN)
    assert math.isnan(mean[0]) and mean[1] == pytest.approx(20.0)


def test_histogram_reset_uses_the_new_counts_whole():
    store = SeriesStore()
    bounds = [1.0]
    store.ingest_metrics(
        metrics_request(
            [
                histogram(
                    "h",
                    [
                        (T0, T0 + 10 * S, bounds, [100, 0], 50.0),
                        (T0 + 15 * S, T0 + 20 * S, bounds, [0, 4], 8.0),  # process restarted
                    ],
                )
            ]
        )
    )
    _, _, mean = store.query(only(store, "h").id, View.MEAN)
    assert mean[1] == pytest.approx(2.0)


def test_exponential_histogram_quantiles_are_close_to_the_truth():
    store = SeriesStore()
    values = np.random.default_rng(1).lognormal(mean=0.0, sigma=0.5, size=5000)
    metric = metrics_pb2.Metric(name="exp", unit="s")
    metric.exponential_histogram.aggregation_temporality = DELTA
    for scale, ts in ((4, T0 + 10 * S), (3, T0 + 20 * S)):  # the producer lowered its scale in between
        base = 2 ** (2**-scale)
        index = np.ceil(np.log(values) / np.log(base)).astype(int) - 1
        offset = int(index.min())
        counts = np.bincount(index - offset)
        dp = metric.exponential_histogram.data_points.add(
            time_unix_nano=ts, start_time_unix_nano=ts - 10 * S, count=len(values), sum=float(values.sum()), scale=scale
        )
        dp.positive.offset = offset
        dp.positive.bucket_counts.extend(counts.tolist())
    result = store.ingest_metrics(metrics_request([metric]))
    assert result.rejected == 0
    info = only(store, "exp")
    _, _, p50 = store.query(info.id, View.P50)
    _, _, p90 = store.query(info.id, View.P90)
    assert p50 == pytest.approx([np.quantile(values, 0.5)] * 2, rel=0.06)
    assert p90 == pytest.approx([np.quantile(values, 0.9)] * 2, rel=0.06)
    _, _, mean = store.query(info.id, View.MEAN)
    assert mean[0] == pytest.approx(values.mean())


def test_summary_becomes_quantile_gauges_and_count_sum():
    store = SeriesStore()
    metric = metrics_pb2.Metric(name="rpc")
    dp = metric.summary.data_points.add(time_unix_nano=T0, count=10, sum=5.0)
    dp.quantile_values.add(quantile=0.5, value=0.4)
    dp.quantile_values.add(quantile=0.99, value=0.9)
    store.ingest_metrics(metrics_request([metric]))
    quantiles = {i.attributes["quantile"]: store.query(i.id)[2][0] for i in store.list_series("rpc")}
    assert quantiles == {0.5: 0.4, 0.99: 0.9}
    assert store.query(only(store, "rpc.count").id, View.RAW)[2].tolist() == [10.0]


def test_malformed_points_are_rejected_and_counted_not_stored():
    store = SeriesStore()
    bad_hist = histogram("h", [(T0, T0 + S, [1.0, 2.0], [1, 1], 1.0)])  # 2 bounds need 3 counts
    no_time = gauge("g", [(0, 1.0)])
    unnamed = gauge("", [(T0, 1.0)])
    result = store.ingest_metrics(metrics_request([bad_hist, no_time, unnamed, gauge("ok", [(T0, 1.0)])]))
    assert (result.accepted, result.rejected) == (1, 3)
    assert "bucket_counts" in result.message and "time_unix_nano" in result.message
    assert [i.metric for i in store.list_series()] == ["ok"]


def test_cardinality_limit_rejects_new_series_and_reports_it():
    hits = []
    store = SeriesStore(StoreLimits(max_series=3), on_cardinality_limit=hits.append)
    result = store.ingest_metrics(metrics_request([gauge("g", [(T0, 1.0)], {"i": i}) for i in range(5)]))
    assert (result.accepted, result.rejected) == (3, 2)
    assert result.reasons == {"series limit reached": 2}
    assert len(hits) == 2
    # known series still accept points
    assert store.ingest_metrics(metrics_request([gauge("g", [(T0 + S, 2.0)], {"i": 0})])).accepted == 1


def test_retention_drops_old_points_and_forgets_empty_series():
    store = SeriesStore(StoreLimits(retention_s=100))
    store.ingest_metrics(metrics_request([gauge("old", [(T0, 1.0)]), gauge("new", [(T0 + 200 * S, 1.0)])]))
    store.enforce_retention(now_s=(T0 + 250 * S) / 1e9)
    assert [i.metric for i in store.list_series()] == ["new"]


def test_spans_become_red_series_and_a_sample():
    store = SeriesStore(StoreLimits(span_bin_s=10))
    spans = [
        {
            "name": "GET /cart",
            "start": T0 + i * S,
            "end": T0 + i * S + 50_000_000 * (1 + i % 2),
            "error": i == 3,
            "attributes": {"http.route": "/cart"},
        }
        for i in range(8)
    ]
    result = store.ingest_spans(trace_request(spans))
    assert (result.accepted, result.rejected) == (8, 0)
    calls = only(store, "factorylens.span.calls")
    assert calls.entity == "service:checkout" and calls.attributes == {"span.name": "GET /cart", "span.kind": "server"}
    assert store.query(calls.id, View.INCREASE)[2].tolist() == [8.0]
    assert store.query(only(store, "factorylens.span.errors").id, View.INCREASE)[2].tolist() == [1.0]
    _, _, mean = store.query(only(store, "factorylens.span.duration").id, View.MEAN)
    assert mean[0] == pytest.approx(0.075)
    sample = store.span_sample.spans("checkout", "GET /cart")
    assert sample[0]["duration_s"] == pytest.approx(0.1)
    assert any(s["error"] for s in sample) and len(sample[0]["trace_id"]) == 32
    bad = trace_request([{"name": "x", "start": T0, "end": T0 - 1}])
    assert store.ingest_spans(bad).rejected == 1


def test_logs_become_events_and_a_count_series():
    store = SeriesStore()
    result = store.ingest_logs(
        logs_request(
            [
                {
                    "time": T0,
                    "event_name": "hw.gpu.xid",
                    "attributes": {"hw.gpu.xid.code": 79},
                    "body": "fell off the bus",
                },
                {"time": T0 + 100, "event_name": "hw.gpu.xid"},
                {"time": 0},
            ]
        )
    )
    assert (result.accepted, result.rejected) == (2, 1)
    assert store.events[0]["attributes"] == {"hw.gpu.xid.code": 79}
    assert store.events[0]["body"] == "fell off the bus"
    assert store.query(only(store, "factorylens.events").id, View.INCREASE)[2].tolist() == [2.0]


def test_frame_and_state_round_trip():
    store = SeriesStore()
    store.ingest_metrics(
        metrics_request(
            [
                gauge("a", [(T0 + i * S, float(i)) for i in range(6000)]),
                gauge("b", [(T0 + i * S, 2.0 * i) for i in range(10)]),
            ]
        )
    )
    ids = [only(store, "a").id, only(store, "b").id]
    frame = store.frame(ids, T0, T0 + 9 * S)
    assert list(frame.columns) == ids and len(frame) == 10
    assert frame[ids[1]].iloc[-1] == 18.0
    clone = SeriesStore()
    clone.restore(pickle.loads(pickle.dumps(store.state())))
    assert clone.stats() == store.stats()
    assert np.array_equal(clone.query(ids[0])[2], store.query(ids[0])[2])
    stats = store.stats()
    assert stats["bytes"] / stats["points"] <= 24


def test_hostile_points_are_refused_one_by_one():
    store = SeriesStore()
    huge = metrics_pb2.Metric(name="big", unit="s")
    huge.exponential_histogram.aggregation_temporality = DELTA
    dp = huge.exponential_histogram.data_points.add(time_unix_nano=T0, count=1, scale=0)
    dp.positive.bucket_counts.extend([0] * 10_000)
    far = gauge("far", [(2**63 + 5, 1.0), (T0, 2.0)])  # uint64 times past int64
    bad_start = counter("c", [(2**64 - 1, T0, 1.0)])
    result = store.ingest_metrics(metrics_request([huge, far, bad_start]))
    assert (result.accepted, result.rejected) == (1, 3)
    assert store.query(only(store, "far").id)[2].tolist() == [2.0]


def test_exponential_buckets_interpolate_within_their_own_edges_and_missing_sums_are_unknown():
    store = SeriesStore()
    metric = metrics_pb2.Metric(name="exp1", unit="s")
    metric.exponential_histogram.aggregation_temporality = DELTA
    dp = metric.exponential_histogram.data_points.add(
        time_unix_nano=T0, start_time_unix_nano=T0 - S, count=100, scale=0
    )  # no sum
    dp.positive.offset = 10  # (1024, 2048]
    dp.positive.bucket_counts.append(100)
    store.ingest_metrics(metrics_request([metric]))
    sid = only(store, "exp1").id
    assert store.query(sid, View.P50)[2].tolist() == [1536.0]
    assert math.isnan(store.query(sid, View.MEAN)[2][0])


def test_entities_name_what_a_series_is_about():
    from factorylens.rca_service.store import entity_of

    agent = {"service.name": "factorylens-gpu-receiver", "host.name": "n1"}
    assert entity_of(agent, {"cpu": 3, "state": "user"}) == "host:n1"
    assert entity_of(agent, {"hw.id": "GPU-1"}) == "gpu:GPU-1"
    assert entity_of(agent, {"system.filesystem.mountpoint": "/mnt/ckpt"}) == "fs:n1//mnt/ckpt"
    assert entity_of({"service.name": "checkout"}, {}) == "service:checkout"
    port = {"hw.id": "0xb8ce/1", "hw.type": "network", "network.interface.name": "mlx5_0/1"}
    assert entity_of(agent, port) == "nic:n1/mlx5_0/1"
    training = {
        "service.name": "factorylens-training",
        "factorylens.job.id": "j",
        "factorylens.rank": 3,
        "hw.id": "GPU-9",
    }
    assert entity_of(training, {}) == "rank:j/3"
    # a scraped serving engine is its replica, named by its scrape target (its address, else the instance)
    scraped = {"service.name": "llm", "server.address": "10.0.0.7", "server.port": 8000, "service.instance.id": "x"}
    assert entity_of(scraped, {"gen_ai.provider.name": "vllm"}) == "replica:llm/10.0.0.7:8000"
    loopback = {"service.name": "llm", "service.instance.id": "127.0.0.1:8000"}
    assert entity_of(loopback, {"gen_ai.provider.name": "sglang"}) == "replica:llm/127.0.0.1:8000"
    # an application's client-side view of a hosted model is not one of our replicas
    assert entity_of(scraped, {"gen_ai.provider.name": "openai"}) == "service:llm"


@pytest.mark.parametrize(("per_interval", "slow_intervals_to_show"), [(100, 1), (5, 2)])
def test_a_served_models_p95_reads_the_latest_requests_that_fill_its_tail(per_interval, slow_intervals_to_show):
    """A serving latency's p95 is read over the latest requests that put 20 in its tail (400), at most five
    minutes of them: a busy replica's (100 requests per 10 s) moves the first interval its requests all
    get slower, where its 5-minute p95 would wait for 15 s of them; a quiet one's (5 per 10 s) needs the
    five minutes and moves once a twentieth of them is slow (the second interval)."""
    bounds = [0.05, 0.1, 0.2, 0.4]
    counts, points, total = np.zeros(5, int), [], 0.0
    for k in range(1, 61):
        slow = k > 40
        counts[3 if slow else 1] += per_interval
        total += per_interval * (0.3 if slow else 0.07)
        points.append((T0, T0 + k * 10 * S, bounds, counts.tolist(), total))
    store = SeriesStore()
    store.ingest_metrics(metrics_request([histogram("gen_ai.server.time_per_output_token", points)]))
    info = only(store, "gen_ai.server.time_per_output_token")
    _, _, p95 = store.query(info.id, View.P95)
    assert (p95[1:40] <= 0.1).all()  # one bucket's interpolation while every request is fast
    first_slow = int(np.argmax(p95 > 0.2))
    assert first_slow - 39 == slow_intervals_to_show, p95[38:48]
