"""The PyTorch integration with real torch (CPU build) and a real tiny model."""

from __future__ import annotations

import time

import pytest
import torch  # `make test` installs the CPU build (torch==2.13.0)
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from factorylens.instrumentation.torch import TorchInstrumentor, instrument_dataloader, to_device

from ..conftest import free_port


class SlowLayer(nn.Module):
    """Forward takes at least 10 ms (stands in for real compute, so the timings are checkable)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.01)
        return x


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), SlowLayer(), nn.Linear(16, 1))


def test_a_real_loop_is_timed_automatically(instrument, tmp_path):
    run = instrument(span_every_steps=2)
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = TensorDataset(torch.randn(64, 8), torch.randn(64, 1))
    instrumentor = TorchInstrumentor(run.instrumentor, model=model).instrument()
    try:
        for number, (x, y) in enumerate(
            instrument_dataloader(DataLoader(data, batch_size=16), run.instrumentor), start=1
        ):
            with run.instrumentor.step(samples=len(x)):
                x, y = to_device((x, y), "cpu", training=run.instrumentor)
                loss = nn.functional.mse_loss(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if number == 4:
                    torch.save(model.state_dict(), tmp_path / "model.pt")
        with run.instrumentor.step():
            model.eval()
            with torch.no_grad():
                model(torch.randn(4, 8))
            model.load_state_dict(torch.load(tmp_path / "model.pt"))
    finally:
        instrumentor.uninstrument()
    run.flush()
    assert run.phase("forward").count == 4 and run.phase("forward").sum >= 0.04
    assert run.phase("eval").count == 1 and run.phase("eval").sum >= 0.01
    assert run.phase("backward").count == 4  # Tensor.backward → autograd.backward timed once
    assert run.phase("optimizer").count == 4
    assert run.phase("data").count == 4
    assert run.phase("h2d").count == 4
    io = {a["factorylens.checkpoint.operation"]: p.value for a, p in run.points("factorylens.checkpoint.io")}
    assert io["save"] == (tmp_path / "model.pt").stat().st_size and io["load"] == io["save"]
    spans = run.spans.get_finished_spans()
    names = {s.name for s in spans if s.parent is not None}
    assert {"train.forward", "train.backward", "train.optimizer", "train.h2d", "train.data"} <= names
    # hooks and patches are gone after uninstrument()
    assert torch.save.__module__ == "torch.serialization" and torch.Tensor.backward.__name__ == "backward"
    before = len(run.instrumentor.recorder.phases)
    model.train()
    model(torch.randn(2, 8)).sum().backward()
    assert len(run.instrumentor.recorder.phases) == before


def test_collectives_through_torch_distributed(instrument):
    run = instrument()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    instrumentor = TorchInstrumentor(run.instrumentor).instrument()
    try:
        with run.instrumentor.step():
            tensor = torch.ones(1000, dtype=torch.float32)
            dist.all_reduce(tensor)
            gathered = [torch.empty(250, dtype=torch.float64)]
            dist.all_gather(gathered, torch.ones(250, dtype=torch.float64))
            dist.broadcast(tensor, src=0)
            dist.barrier()
    finally:
        instrumentor.uninstrument()
        dist.destroy_process_group()
    run.flush()
    io = {a["factorylens.collective.op"]: p.value for a, p in run.points("factorylens.collective.io")}
    assert io == {"all_reduce": 4000, "all_gather": 2000, "broadcast": 4000}
    durations = {a["factorylens.collective.op"] for a, _ in run.points("factorylens.collective.duration")}
    assert durations == {"all_reduce", "all_gather", "broadcast", "barrier"}


class FakeCudaEvent:
    """Stands in for ``torch.cuda.Event``: completes only when the test says so."""

    clock_ms = 0.0
    done = False

    def __init__(self) -> None:
        self.at = 0.0

    def record(self) -> None:
        FakeCudaEvent.clock_ms += 7.0  # every phase takes 7 ms of device time
        self.at = FakeCudaEvent.clock_ms

    def query(self) -> bool:
        return FakeCudaEvent.done

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: FakeCudaEvent) -> float:
        return end.at - self.at


def one_device_step(run) -> None:
    """A forward and backward pass timed as if on a GPU (FakeCudaEvent stands in for CUDA events)."""
    model = tiny_model()
    instrumentor = TorchInstrumentor(
        run.instrumentor, model=model, event_factory=FakeCudaEvent, force_device_timing=True
    ).instrument()
    try:
        with run.instrumentor.step():
            model(torch.randn(2, 8)).sum().backward()
    finally:
        instrumentor.uninstrument()


def test_device_phases_use_events_and_wait_for_them_without_blocking_the_loop(instrument):
    FakeCudaEvent.clock_ms, FakeCudaEvent.done = 0.0, False
    run = instrument()
    one_device_step(run)
    telemetry = run.instrumentor.telemetry
    assert telemetry.drain() == 0  # the device work has not finished: the step waits, the loop did not
    FakeCudaEvent.done = True
    assert telemetry.drain() == 1
    run.flush()
    assert run.phase("forward").sum == pytest.approx(0.007)  # device time, not the 10 ms host sleep
    assert run.phase("backward").sum == pytest.approx(0.007)


def test_one_torch_instrumentor_per_process_removed_with_its_training_instrumentor(instrument):
    import collections
    import io

    run = instrument()
    original_save = torch.save
    first = TorchInstrumentor(run.instrumentor, model=tiny_model()).instrument()
    with pytest.raises(RuntimeError, match="already instrumented"):
        TorchInstrumentor(run.instrumentor).instrument()
    with run.instrumentor.step():
        torch.save({"w": torch.ones(3)}, io.BytesIO())  # into a buffer: not a checkpoint on storage
        batch = collections.namedtuple("Batch", "x y")(torch.ones(2), torch.zeros(2))
        moved = to_device(batch, "cpu", training=run.instrumentor)
    assert type(moved).__name__ == "Batch" and moved.y.sum() == 0
    run.instrumentor.uninstrument()  # takes the torch integration with it
    assert torch.save is original_save and first._patched == []
    TorchInstrumentor(instrument().instrumentor).instrument()  # and a new one may now patch torch
    run.reader.get_metrics_data()
    names = [a["factorylens.train.phase"] for a, _ in run.points("factorylens.train.phase.duration")]
    assert "checkpoint.save" not in names and "h2d" in names


def test_device_phases_are_placed_on_the_device_timeline(instrument):
    """Kernels run one after another on the GPU even when they were queued at once."""
    run = instrument(span_every_steps=1)
    FakeCudaEvent.clock_ms, FakeCudaEvent.done = 0.0, True
    one_device_step(run)
    run.flush()
    spans = {s.name: s for s in run.spans.get_finished_spans()}
    forward, backward, step = spans["train.forward"], spans["train.backward"], spans["train.step"]
    assert forward.end_time <= backward.start_time  # sequential on the device, no overlap
    assert backward.start_time - forward.start_time == 14_000_000  # 7 ms forward + 7 ms to the next start
    assert step.start_time <= forward.start_time and backward.end_time <= step.end_time
