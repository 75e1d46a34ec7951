"""What the registry says a signal means (kind, bad direction, can it slow a workload, plain name), and the
generated name constants."""

from __future__ import annotations

from pathlib import Path

import pytest

from factorylens.rca_service.ranking import SignalKind as EngineKind
from factorylens.rca_service.ranking import foreign_signal
from factorylens.registry import (
    ANY_VALUE,
    REGISTRY,
    XID_NAMES,
    Attributes,
    Direction,
    Domain,
    Events,
    Instrument,
    Meaning,
    Metrics,
    MetricSpec,
    Registry,
    Side,
    SignalKind,
    Source,
    ValueMeaning,
    python_names,
)

ROOT = Path(__file__).resolve().parents[1]
BOOKKEEPING = {Domain.COST, Domain.RCA, Domain.SELF}  # never scored by the analysis; info is allowed there


def test_every_metric_has_a_meaning():
    missing = [m.name for m in REGISTRY.metrics if m.meaning is None]
    assert not missing, f"declare what these metrics mean (MEANINGS in _catalog.py): {missing}"


def test_info_is_only_for_bookkeeping_and_bookkeeping_never_slows_a_workload():
    for spec in REGISTRY.metrics:
        for meaning in _meanings(spec):
            assert meaning.domain is not None
            if meaning.kind is SignalKind.INFO:
                assert meaning.domain in BOOKKEEPING, f"{spec.name}: info outside cost/rca/self ({meaning.name})"
            if meaning.domain in BOOKKEEPING:
                assert not meaning.can_slow, f"{spec.name}: {meaning.name} cannot slow a workload"


def test_value_meanings_name_allowed_attributes_and_listed_values():
    for spec in REGISTRY.metrics:
        allowed = set(REGISTRY.allowed_attributes(spec))
        for v in spec.value_meanings:
            assert v.attribute in allowed, f"{spec.name}: {v.attribute} is not an attribute of the metric"
            values = REGISTRY.attribute(v.attribute).values
            if values is not None and v.value != ANY_VALUE:
                assert v.value in values, f"{spec.name}: {v.attribute}={v.value} is not one of {values}"
            assert any(getattr(v, f) is not None for f in ("kind", "bad", "can_slow", "name", "side", "domain"))


def test_the_meanings_an_sre_expects():
    def meaning(metric: str, **attributes: object) -> Meaning:
        found = REGISTRY.meaning(metric, {k.replace("__", "."): v for k, v in attributes.items()})
        assert found is not None
        return found

    ecc = meaning("hw.errors", error__type="corrected")
    assert (ecc.kind, ecc.bad, ecc.can_slow, ecc.name) == (
        SignalKind.ERROR,
        Direction.UP,
        False,
        "corrected ECC errors",
    )
    assert meaning("hw.errors", error__type="uncorrected").can_slow
    assert meaning("hw.errors", error__type="pcie_replay").can_slow
    assert meaning("hw.errors", error__type="nvlink_crc_data").can_slow
    link = meaning("hw.errors", error__type="link_downed")
    assert link.can_slow and link.domain is Domain.NETWORK

    fell_off = meaning("hw.errors", error__type="xid", hw__gpu__xid__code=79)
    assert fell_off.name == "GPU fell off the bus (XID 79)" and fell_off.can_slow and fell_off.kind is SignalKind.ERROR
    assert meaning("hw.errors", error__type="xid", hw__gpu__xid__code="79") == fell_off  # int or text
    assert meaning("hw.errors", error__type="xid", hw__gpu__xid__code=4242).name == "XID 4242 error"
    assert meaning("hw.errors", error__type="xid").name == "XID errors"
    required = {13, 31, 43, 45, 48, 61, 62, 63, 64, 68, 69, 74, 79, 92, 94, 95, 119, 120}
    assert required <= set(XID_NAMES)
    for code in required:
        assert meaning("hw.errors", error__type="xid", hw__gpu__xid__code=code).name.endswith(f"(XID {code})")

    for reason in ("gpu_idle", "clocks_setting", "display_clocks", "sync_boost"):
        assert not meaning("hw.gpu.clock_event.active", hw__gpu__clock_event__reason=reason).can_slow, reason
    for reason in ("power_cap", "hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake"):
        throttle = meaning("hw.gpu.clock_event.active", hw__gpu__clock_event__reason=reason)
        assert throttle.can_slow and throttle.bad is Direction.UP, reason
    assert meaning("hw.gpu.clock_event.active", hw__gpu__clock_event__reason="hw_thermal").name == (
        "thermal slowdown (hardware)"
    )

    assert meaning("hw.status", hw__state="ok").bad is Direction.DOWN
    for state in ("degraded", "failed", "predicted_failure"):
        failing = meaning("hw.status", hw__state=state)
        assert failing.bad is Direction.UP and failing.can_slow and failing.kind is SignalKind.STATE

    for free in (
        meaning("hw.gpu.memory.free"),
        meaning("system.memory.usage", state="free"),
        meaning("system.memory.utilization", state="available"),
        meaning("system.filesystem.usage", system__filesystem__state="free"),
        meaning("system.swap.usage", state="free"),
    ):
        assert (free.kind, free.bad) == (SignalKind.CAPACITY, Direction.DOWN), free.name
    assert meaning("system.memory.usage", state="used").bad is Direction.UP

    assert meaning("hw.gpu.utilization").bad is Direction.UP
    assert meaning("hw.gpu.idle").bad is Direction.DOWN
    assert meaning("hw.temperature").kind is SignalKind.SATURATION and meaning("hw.temperature").can_slow
    assert (meaning("hw.power.limit").kind, meaning("hw.power.limit").bad) == (SignalKind.CAPACITY, Direction.DOWN)
    clock = meaning("hw.gpu.speed")
    assert (clock.kind, clock.bad, clock.can_slow) == (SignalKind.CAPACITY, Direction.DOWN, False)

    phases = {
        "data": (Domain.DATA, Side.OWN),
        "h2d": (Domain.DATA, Side.OWN),
        "forward": (Domain.GPU, Side.OWN),
        "backward": (Domain.GPU, Side.OWN),
        "optimizer": (Domain.GPU, Side.OWN),
        "collective": (Domain.NETWORK, Side.OUTBOUND),
        "checkpoint.save": (Domain.STORAGE, Side.OUTBOUND),
        "checkpoint.load": (Domain.STORAGE, Side.OUTBOUND),
        "eval": (Domain.APP, Side.OWN),
    }
    for phase, (domain, side) in phases.items():
        m = meaning("factorylens.train.phase.duration", factorylens__train__phase=phase)
        assert (m.kind, m.bad, m.domain, m.side) == (SignalKind.LATENCY, Direction.UP, domain, side), phase
    assert meaning("factorylens.train.step.duration").kind is SignalKind.LATENCY
    for rate in ("factorylens.train.samples.rate", "factorylens.train.tokens.rate", "factorylens.train.samples"):
        assert (meaning(rate).kind, meaning(rate).bad) == (SignalKind.THROUGHPUT, Direction.DOWN)
    assert meaning("factorylens.train.mfu").side is Side.OUTCOME
    assert meaning("factorylens.train.goodput").side is Side.OUTCOME
    assert meaning("factorylens.span.duration", span__kind="client").side is Side.OUTBOUND
    # a request's whole time includes its callees': how it went; the service's own share is its exclusive time
    assert meaning("factorylens.span.duration", span__kind="server").side is Side.OUTCOME
    assert meaning("factorylens.span.self_duration", span__kind="server").side is Side.OWN
    assert meaning("factorylens.span.self_duration", span__kind="client").side is Side.OUTBOUND
    assert meaning("factorylens.span.error_origins").side is Side.OWN
    assert meaning("factorylens.events", event__name="hw.gpu.xid").kind is SignalKind.ERROR


def test_meaning_of_unknown_metrics_is_none_and_answers_are_cached():
    assert REGISTRY.meaning("no.such.metric") is None
    assert REGISTRY.meaning("hw.temperature") is REGISTRY.meaning("hw.temperature", {"hw.id": "GPU-1"})
    # attributes no value meaning reads do not split the cache
    first = REGISTRY.meaning("hw.errors", {"error.type": "xid", "hw.gpu.xid.code": 79, "hw.id": "GPU-1"})
    assert REGISTRY.meaning("hw.errors", {"error.type": "xid", "hw.gpu.xid.code": 79, "hw.id": "GPU-2"}) is first


def test_value_meanings_apply_in_order_and_the_registry_refuses_bad_ones():
    base = Meaning(SignalKind.ERROR, Direction.UP, True, "errors")

    def registry(*values: ValueMeaning) -> Registry:
        from factorylens.registry._catalog import ATTRIBUTES

        spec = MetricSpec(
            "x.errors",
            Instrument.COUNTER,
            "1",
            "",
            Domain.GPU,
            Source.FACTORYLENS,
            ("error.type", "hw.gpu.xid.code"),
            meaning=base,
            value_meanings=values,
        )
        return Registry((spec,), ATTRIBUTES, {}, ())

    r = registry(
        ValueMeaning("error.type", "xid", name="XID errors"),
        ValueMeaning("hw.gpu.xid.code", ANY_VALUE, name="XID {value} error"),
        ValueMeaning("hw.gpu.xid.code", "63", can_slow=False, name="recorded (XID 63)"),
    )
    assert r.meaning("x.errors", {"error.type": "xid", "hw.gpu.xid.code": 7}).name == "XID 7 error"
    recorded = r.meaning("x.errors", {"error.type": "xid", "hw.gpu.xid.code": 63})
    assert recorded == Meaning(SignalKind.ERROR, Direction.UP, False, "recorded (XID 63)", Side.OWN, Domain.GPU)
    with pytest.raises(ValueError, match="does not allow"):
        registry(ValueMeaning("hw.state", "ok", bad=Direction.DOWN))
    with pytest.raises(ValueError, match="not one of"):
        registry(ValueMeaning("error.type", "corected", can_slow=False))
    with pytest.raises(ValueError, match="before"):
        registry(ValueMeaning("hw.gpu.xid.code", "79"), ValueMeaning("hw.gpu.xid.code", ANY_VALUE))


# --- drift from the name regexes the ranking used before the registry said what signals mean ----------

_SAME_AS_UTILIZATION = "mirror of a utilization: bad when it falls (the resource busier), kind as what it mirrors"
_FREE = "free/available capacity: a fall is how it fills up; the regexes read 'mem' as saturation, bad up"
_RECLAIMABLE = "reclaimable memory (page cache, buffers): capacity, bad down, cannot slow by itself"
_SWAP = "swap in use is pressure (saturation), not an error; the regexes matched 'swap' as an error"
_TRAFFIC_RATE = "a bytes-per-second rate is traffic (volume), like the counter it is the rate of"
_CONGESTION = "ECN, CNP and xmit_wait are congestion (queueing in the fabric): saturation, not errors"
_PORT_ERROR = "a port error on hw.errors{hw.type=network}: the trouble lives in the network, not the GPU"
_STEP_COUNTER = "its rate (the default view) is work per second: throughput, bad when it falls"
_OUTCOME = "MFU and goodput are work done per capacity: throughput (outcome side), not a success ratio"
_COST = "cost bookkeeping: info, never a cause (the analysis never scores the cost domain)"
_SELF = "the service's own health: the direction an operator alerts on (the analysis never scores self)"
_FINDINGS = "our own findings: info (the analysis never scores rca)"
_LOG_VOLUME = "log lines are a volume, like calls: traffic (the regexes found no word, or 'templates' as saturation)"
_LOG_TROUBLE = "warning and fatal log lines are errors, bad up (the regexes read no severity but 'error')"
_SERVING_LATENCY = (
    "a serving engine's per-request time (TTFT, TPOT, a phase): latency, bad up (no word matched); what a request "
    "experiences is the outcome, the KPI's kin, not the server's own trouble"
)
_SERVING_SUMMED = "Triton's summed request or queue time: latency, bad up, like system.disk.time"
_SERVING_VOLUME = "tokens or requests in a batch are volume: traffic (the regexes found no word)"
_SERVING_OCCUPANCY = (
    "requests running in the engine's batch fill up when it serves slower or is asked more: saturation, a "
    "consequence (the regexes read it as traffic)"
)

# every way the registry's meaning differs, on purpose, from the name-based guess (foreign_signal)
_INCLUSIVE = "a span's whole time and failure include its callees': the outcome; the own share is self_duration"
DELIBERATE_DIFFERENCES = {
    "gen_ai.server.time_to_first_token": _SERVING_LATENCY,
    "gen_ai.server.time_per_output_token": _SERVING_LATENCY,
    "factorylens.inference.request.queue_time": _SERVING_LATENCY + "; the regexes read 'queue' as saturation",
    "factorylens.inference.request.prefill_time": _SERVING_LATENCY,
    "factorylens.inference.request.decode_time": _SERVING_LATENCY,
    "factorylens.inference.request.inference_time": _SERVING_LATENCY,
    "factorylens.inference.request.time": _SERVING_SUMMED,
    "factorylens.inference.queue.time": _SERVING_SUMMED + "; the regexes read 'queue' as saturation",
    "gen_ai.client.token.usage": _SERVING_VOLUME + "; the server counts them, so it is not outbound",
    "factorylens.inference.batch.size": _SERVING_OCCUPANCY,
    "factorylens.inference.requests.running": _SERVING_OCCUPANCY,
    "gen_ai.server.request.duration": _SERVING_LATENCY,
    "factorylens.inference.inter_token_latency": _SERVING_LATENCY,
    "factorylens.inference.kv_cache.usage": "the KV cache filling up: saturation, bad up (no word matched)",
    "factorylens.inference.preemptions": "requests evicted to be recomputed: errors, bad up (no word matched)",
    "factorylens.inference.requests.finished{factorylens.inference.finish_reason=abort}": "aborted requests are "
    "failures: errors, bad up",
    "factorylens.inference.compute.time": _SERVING_SUMMED,
    "factorylens.inference.compute.time{factorylens.inference.compute.stage=input}": _SERVING_SUMMED,
    "factorylens.inference.compute.time{factorylens.inference.compute.stage=output}": _SERVING_SUMMED,
    "factorylens.inference.batch.forward_time": "a batch's forward pass (TGI): latency, bad up (no word matched)",
    "factorylens.inference.batch.forward_time{factorylens.inference.phase=prefill}": "a batch's forward pass "
    "(TGI): latency, bad up",
    "factorylens.inference.batch.forward_time{factorylens.inference.phase=decode}": "a batch's forward pass "
    "(TGI): latency, bad up",
    "factorylens.inference.prefix_cache.queries": "prompt tokens looked up: a volume, traffic (no word matched)",
    "factorylens.inference.prefix_cache.hits": "prompt tokens found cached: a volume, traffic (no word matched)",
    "factorylens.inference.prefix_cache.hit_ratio": "fewer prompt tokens found cached means more prefill work: "
    "bad when it falls (no word matched)",
    "factorylens.inference.requests.retracted": "requests put back for lack of KV-cache room: KV-cache pressure, "
    "saturation (the regexes read 'retracted' as errors)",
    "factorylens.span.errors": _INCLUSIVE + " and error_origins",
    "factorylens.span.duration": _INCLUSIVE,
    "factorylens.span.duration{span.kind=server}": _INCLUSIVE,
    "factorylens.span.edge.errors": "how the callers see the callee's failures: a caller's view",
    "factorylens.span.edge.duration": "what the callers waited on the callee, the wire included: a caller's view",
    "hw.gpu.memory.free": _FREE,
    "hw.energy": "its rate is the power draw: saturation, bad up, like hw.power (the regexes found no word)",
    "hw.gpu.speed": "clocks are capacity: bad when they fall (how throttling shows); cannot slow by itself",
    "hw.gpu.speed{hw.gpu.clock_domain=graphics}": "clocks: see hw.gpu.speed",
    "hw.gpu.speed{hw.gpu.clock_domain=sm}": "clocks: see hw.gpu.speed",
    "hw.gpu.speed{hw.gpu.clock_domain=memory}": "clocks: see hw.gpu.speed",
    "hw.gpu.clock_event.active{hw.gpu.clock_event.reason=gpu_idle}": "a state that rises while the GPU waits; "
    "can_slow False says it is no cause (the regexes called it other)",
    "hw.status": "an unknown state of hw.status is a state away from ok: bad up",
    "hw.status{hw.state=degraded}": "the gauge is 1 for the current state: degraded rising is trouble",
    "hw.fan.speed_ratio": "how busy the fan is: utilization, bad up, cannot slow by itself",
    "hw.gpu.allocated": "the job's process leaving the GPU is the change that matters: state, bad down, no cause",
    "hw.gpu.idle": _SAME_AS_UTILIZATION,
    "hw.gpu.xid.last": "the last XID's code: any change is a new XID, so bad either way",
    "hw.gpu.io.rate": _TRAFFIC_RATE,
    "hw.gpu.io.rate{network.io.direction=receive}": _TRAFFIC_RATE,
    "hw.gpu.io.rate{network.io.direction=transmit}": _TRAFFIC_RATE,
    "hw.gpu.interconnect.io.rate": _TRAFFIC_RATE,
    "hw.gpu.interconnect.io.rate{network.io.direction=receive}": _TRAFFIC_RATE,
    "hw.gpu.interconnect.io.rate{network.io.direction=transmit}": _TRAFFIC_RATE,
    "hw.errors{error.type=symbol}": _PORT_ERROR,
    "hw.errors{error.type=link_downed}": _PORT_ERROR,
    "hw.errors{error.type=link_recovery}": _PORT_ERROR,
    "hw.errors{error.type=receive}": _PORT_ERROR,
    "hw.errors{error.type=transmit_discard}": _PORT_ERROR,
    "system.cpu.time{state=idle}": _SAME_AS_UTILIZATION,
    "system.cpu.utilization{state=idle}": _SAME_AS_UTILIZATION,
    "system.cpu.time{state=iowait}": "the host waiting on storage: outbound, in the storage domain",
    "system.cpu.utilization{state=iowait}": "the host waiting on storage: outbound, in the storage domain",
    "system.memory.usage{state=free}": _FREE,
    "system.memory.utilization{state=free}": _FREE,
    "system.memory.usage{state=cached}": _RECLAIMABLE,
    "system.memory.utilization{state=cached}": _RECLAIMABLE,
    "system.memory.usage{state=buffered}": _RECLAIMABLE,
    "system.memory.utilization{state=buffered}": _RECLAIMABLE,
    "system.memory.usage{state=slab_reclaimable}": _RECLAIMABLE,
    "system.memory.utilization{state=slab_reclaimable}": _RECLAIMABLE,
    "system.swap.usage": _SWAP,
    "system.swap.usage{state=used}": _SWAP,
    "system.swap.utilization": _SWAP,
    "system.swap.utilization{state=used}": _SWAP,
    "system.swap.usage{state=free}": _FREE,
    "system.swap.utilization{state=free}": _FREE,
    "system.disk.time": "summed operation time (over operations: latency), like factorylens.storage.operation.time",
    "system.filesystem.usage{system.filesystem.state=free}": _FREE,
    "hw.network.up": "a port leaving ACTIVE is trouble: state, bad down (the regexes called it traffic)",
    "factorylens.network.roce.events": _CONGESTION,
    "factorylens.network.roce.events{factorylens.network.roce.event=ecn_marked}": _CONGESTION,
    "factorylens.network.roce.events{factorylens.network.roce.event=cnp_sent}": _CONGESTION,
    "factorylens.network.roce.events{factorylens.network.roce.event=cnp_handled}": _CONGESTION,
    "factorylens.network.xmit_wait": _CONGESTION,
    "factorylens.train.steps": _STEP_COUNTER,
    "factorylens.train.samples": _STEP_COUNTER,
    "factorylens.train.tokens": _STEP_COUNTER,
    "factorylens.train.mfu": _OUTCOME,
    "factorylens.train.goodput": _OUTCOME,
    "factorylens.events": "log records per event name: a volume (traffic)",
    "factorylens.events{event.name=hw.gpu.xid}": "XID events: the trouble lives in the GPU",
    "factorylens.events{event.name=factorylens.incident}": "our own incidents: info, in the rca domain",
    "factorylens.log.records": _LOG_VOLUME,
    "factorylens.log.records{log.severity=WARN}": _LOG_TROUBLE,
    "factorylens.log.records{log.severity=FATAL}": _LOG_TROUBLE,
    "factorylens.log.templates": _LOG_VOLUME,
    "factorylens.log.templates{log.severity=WARN}": _LOG_TROUBLE,
    "factorylens.log.templates{log.severity=FATAL}": _LOG_TROUBLE,
    "factorylens.gpu.allocation.time": _COST,
    "factorylens.gpu.active.time": _COST,
    "factorylens.gpu.allocation.energy": _COST,
    "factorylens.gpu.price": _COST,
    "factorylens.gpu.energy.price": _COST,
    "factorylens.cost.gpu.time": _COST,
    "factorylens.receiver.devices": _SELF,
    "factorylens.receiver.source.up": _SELF,
    "factorylens.rca.ingest.accepted": _SELF,
    "factorylens.rca.ingest.rejected": _SELF,
    "factorylens.rca.requests.refused": _SELF,
    "factorylens.rca.wal.size": _SELF,
    "factorylens.rca.wal.lag": _SELF,
    "factorylens.rca.snapshot.age": _SELF,
    "factorylens.rca.store.series": _SELF,
    "factorylens.rca.store.points": _SELF,
    "factorylens.rca.attributes.truncated": _SELF,
    "factorylens.rca.wal.quarantined": _SELF,
    "factorylens.rca.recovery.lost_records": _SELF,
    "factorylens.rca.analysis.skipped": _SELF,
}


def engine_view(meaning: Meaning) -> tuple[str, int, str, str]:
    """What the ranking engine reads today: its kind, the bad direction, the side and the domain. Utilization
    is its saturation, capacity its 'good'; a state is an error when rising is bad and 'good' when falling is."""
    kind = {
        SignalKind.LATENCY: EngineKind.LATENCY,
        SignalKind.ERROR: EngineKind.ERRORS,
        SignalKind.THROUGHPUT: EngineKind.THROUGHPUT,
        SignalKind.TRAFFIC: EngineKind.TRAFFIC,
        SignalKind.SATURATION: EngineKind.SATURATION,
        SignalKind.UTILIZATION: EngineKind.SATURATION,
        SignalKind.CAPACITY: EngineKind.GOOD,
        SignalKind.INFO: EngineKind.OTHER,
        SignalKind.STATE: {Direction.UP: EngineKind.ERRORS, Direction.DOWN: EngineKind.GOOD}.get(
            meaning.bad, EngineKind.OTHER
        ),
    }[meaning.kind]
    assert meaning.domain is not None
    return kind.value, int(meaning.bad), meaning.side.value, meaning.domain.value


def test_differences_from_the_name_regexes_are_the_documented_ones():
    found = {}
    for spec in REGISTRY.metrics:
        labels = [(spec.name, {})] + [
            (f"{spec.name}{{{v.attribute}={v.value}}}", {v.attribute: v.value})
            for v in spec.value_meanings
            if v.value != ANY_VALUE
        ]
        for label, attributes in labels:
            meaning = REGISTRY.meaning(spec.name, attributes)
            assert meaning is not None
            guessed = foreign_signal(label)
            old = (guessed.kind.value, guessed.kind.bad_direction, guessed.side.value, guessed.domain)
            if engine_view(meaning) != old:
                found[label] = f"{old} -> {engine_view(meaning)}"
    undocumented = {k: v for k, v in found.items() if k not in DELIBERATE_DIFFERENCES}
    gone = sorted(set(DELIBERATE_DIFFERENCES) - set(found))
    assert not undocumented, "new differences from foreign_signal; document them in DELIBERATE_DIFFERENCES:\n" + (
        "\n".join(f"  {k}: {v}" for k, v in undocumented.items())
    )
    assert not gone, f"documented differences that are gone (remove them): {gone}"


# --- typed names -------------------------------------------------------------------------------------------


def test_the_committed_names_module_is_what_the_registry_generates():
    committed = (ROOT / "factorylens" / "registry" / "names.py").read_text()
    assert committed == python_names(REGISTRY), (
        "factorylens/registry/names.py is stale: run `factorylens metrics --format python > "
        "factorylens/registry/names.py`"
    )


def test_name_constants_cover_the_registry():
    assert Metrics.HW_GPU_UTILIZATION == "hw.gpu.utilization"
    assert Attributes.HW_GPU_XID_CODE == "hw.gpu.xid.code"
    assert Events.HW_GPU_XID == "hw.gpu.xid"
    constants = lambda cls: {v for k, v in vars(cls).items() if k.isupper()}  # noqa: E731
    assert constants(Metrics) == {m.name for m in REGISTRY.metrics}
    assert constants(Attributes) == {a.name for a in REGISTRY.attributes}
    assert constants(Events) == {e.name for e in REGISTRY.events}


def _meanings(spec: MetricSpec) -> list[Meaning]:
    """The metric's meaning and the meaning under each of its value overrides."""
    found = [REGISTRY.meaning(spec.name)]
    found += [REGISTRY.meaning(spec.name, {v.attribute: v.value}) for v in spec.value_meanings]
    return [m for m in found if m is not None]


def test_metrics_command_writes_the_names_module(capsys):
    from factorylens.cli import main

    assert main(["metrics", "--format", "python"]) == 0
    assert capsys.readouterr().out == python_names(REGISTRY)
