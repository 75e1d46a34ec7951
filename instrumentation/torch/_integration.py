"""Automatic phases for PyTorch: forward, backward, optimizer, collectives, checkpoints, h2d, data.

Work on a GPU is asynchronous, so host clocks would time the launch, not the work: phases whose
tensors are on CUDA are timed with CUDA events recorded on the current stream at the phase's start
and end, and resolved by the telemetry thread once the end event has completed (no synchronization
is added to the training loop). CPU phases use ``perf_counter_ns``.

- forward: hooks on the model (``eval`` when the model is not training)
- backward: ``torch.Tensor.backward`` / ``torch.autograd.backward``
- optimizer: the global optimizer step hooks (every optimizer)
- collectives: ``torch.distributed`` all_reduce, all_gather(_into_tensor/_single),
  reduce_scatter(_tensor/_single), broadcast, reduce, all_to_all(_single), gather, scatter, barrier —
  with the bytes this rank sends and the world size. Collectives that DDP issues from C++ for its
  gradient buckets are not Python calls and are not seen (they show as backward time); an
  ``async_op=True`` call is timed until it returns its handle, so its wait shows where ``wait()`` is.
- checkpoints: ``torch.save`` / ``torch.load`` with the path (→ its file system) and bytes
- data and h2d: :func:`instrument_dataloader` and :func:`to_device`
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist

from factorylens.instrumentation._instrumentor import TrainingInstrumentor, active
from factorylens.instrumentation._recorder import StepRecorder

COLLECTIVES = (
    "all_reduce",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_single",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "reduce_scatter_single",
    "broadcast",
    "reduce",
    "all_to_all",
    "all_to_all_single",
    "gather",
    "scatter",
    "barrier",
)
# which positional argument holds what this rank sends (the output buffer comes first in these)
_INPUT_ARGUMENT = {
    "all_gather": 1,
    "all_gather_into_tensor": 1,
    "all_gather_single": 1,
    "reduce_scatter": 1,
    "reduce_scatter_tensor": 1,
    "reduce_scatter_single": 1,
    "all_to_all": 1,
    "all_to_all_single": 1,
}
_INPUT_KEYWORDS = ("tensor", "input_tensor", "input", "input_tensor_list", "input_list")


_instrumented: TorchInstrumentor | None = None  # torch's functions are patched once per process


def _cuda_event() -> Any:
    return torch.cuda.Event(enable_timing=True)


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _nbytes(value: Any) -> int:
    return sum(t.numel() * t.element_size() for t in _tensors(value))


class PhaseTimer:
    """Begin/end timing of a phase, on the device when its tensors are on CUDA."""

    def __init__(
        self, recorder: StepRecorder, event_factory: Callable[[], Any] = _cuda_event, force_device: bool = False
    ) -> None:
        self.recorder = recorder
        self.event_factory = event_factory
        self.force_device = force_device

    def begin(self, name: str, on_device: bool, attributes: dict[str, Any] | None = None) -> tuple:
        event = None
        if on_device or self.force_device:
            if self.recorder.device_anchor is None:  # the step's first device phase: anchor its timeline
                anchor = self.event_factory()
                anchor.record()
                self.recorder.device_anchor = (anchor, time.perf_counter_ns())
            event = self.event_factory()
            event.record()
        return name, time.perf_counter_ns(), event, attributes

    def end(self, token: tuple) -> None:
        name, host_start, start_event, attributes = token
        if start_event is None:
            self.recorder.add_phase(name, host_start, time.perf_counter_ns(), attributes)
            return
        end_event = self.event_factory()
        end_event.record()
        anchor = self.recorder.device_anchor or (start_event, host_start)
        self.recorder.device_phases.append(
            (name, host_start, time.perf_counter_ns(), start_event, end_event, attributes, anchor)
        )


def _on_cuda(value: Any) -> bool:
    return any(t.is_cuda for t in _tensors(value))


class TorchInstrumentor:
    """``TorchInstrumentor(model=model).instrument()`` after ``factorylens.instrumentation.init()``.

    Args:
        training: the process's :class:`TrainingInstrumentor` (default: the active one).
        model: the module whose forward passes are timed (optional).
        distributed, checkpoints, backward, optimizer: which automatic phases to install.
    """

    def __init__(
        self,
        training: TrainingInstrumentor | None = None,
        *,
        model: torch.nn.Module | None = None,
        distributed: bool = True,
        checkpoints: bool = True,
        backward: bool = True,
        optimizer: bool = True,
        event_factory: Callable[[], Any] = _cuda_event,
        force_device_timing: bool = False,
    ) -> None:
        resolved = training or active()
        if resolved is None:
            raise RuntimeError("call factorylens.instrumentation.init() (or pass a TrainingInstrumentor) first")
        self.training: TrainingInstrumentor = resolved
        self.model = model
        self.options = {
            "distributed": distributed,
            "checkpoints": checkpoints,
            "backward": backward,
            "optimizer": optimizer,
        }
        self.timer = PhaseTimer(self.training.recorder, event_factory, force_device_timing)
        self._handles: list[Any] = []
        self._patched: list[tuple[Any, str, Any]] = []
        self._forward: list[tuple] = []
        self._backward_depth = [0]

    # ---- lifecycle -------------------------------------------------------------------------------
    def instrument(self) -> TorchInstrumentor:
        global _instrumented
        if self._handles or self._patched:
            return self
        if _instrumented is not None:
            raise RuntimeError(
                "torch is already instrumented by another TorchInstrumentor: one per process "
                "(uninstrument it first); time other models' passes with fl.forward()"
            )
        _instrumented = self
        self.training.on_uninstrument(self.uninstrument)
        if self.model is not None:
            self._handles.append(self.model.register_forward_pre_hook(self._forward_begin, with_kwargs=True))
            self._handles.append(self.model.register_forward_hook(self._forward_end, always_call=True))
        if self.options["optimizer"]:
            from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

            self._optimizer_tokens: list[tuple] = []
            self._handles.append(register_optimizer_step_pre_hook(self._optimizer_begin))
            self._handles.append(register_optimizer_step_post_hook(self._optimizer_end))
        if self.options["backward"]:
            self._patch(torch.Tensor, "backward", self._timed_backward(torch.Tensor.backward))
            self._patch(torch.autograd, "backward", self._timed_backward(torch.autograd.backward))
        if self.options["distributed"] and dist.is_available():
            for name in COLLECTIVES:
                if hasattr(dist, name):
                    self._patch(dist, name, self._timed_collective(name, getattr(dist, name)))
        if self.options["checkpoints"]:
            self._patch(torch, "save", self._timed_checkpoint("checkpoint.save", torch.save))
            self._patch(torch, "load", self._timed_checkpoint("checkpoint.load", torch.load))
        return self

    def uninstrument(self) -> None:
        global _instrumented
        for handle in self._handles:
            handle.remove()
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._handles, self._patched = [], []
        if _instrumented is self:
            _instrumented = None

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._patched.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    # ---- hooks and wrappers ----------------------------------------------------------------------
    def _forward_begin(self, module: torch.nn.Module, args: Any, kwargs: Any) -> None:
        name = "forward" if module.training else "eval"
        self._forward.append(self.timer.begin(name, _on_cuda(args) or _on_cuda(kwargs)))

    def _forward_end(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if self._forward:
            self.timer.end(self._forward.pop())

    def _optimizer_begin(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        groups = optimizer.param_groups
        on_cuda = bool(groups and groups[0]["params"]) and groups[0]["params"][0].is_cuda
        self._optimizer_tokens.append(self.timer.begin("optimizer", on_cuda))

    def _optimizer_end(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._optimizer_tokens:
            self.timer.end(self._optimizer_tokens.pop())

    def _timed_backward(self, original: Callable) -> Callable:
        timer, depth = self.timer, self._backward_depth

        @functools.wraps(original)
        def backward(*args: Any, **kwargs: Any) -> Any:
            if depth[0]:  # Tensor.backward calls autograd.backward: time the outer call only
                return original(*args, **kwargs)
            depth[0] += 1
            token = timer.begin("backward", _on_cuda(args[:1]))
            try:
                return original(*args, **kwargs)
            finally:
                timer.end(token)
                depth[0] -= 1

        return backward

    def _timed_collective(self, op: str, original: Callable) -> Callable:
        timer = self.timer

        position = _INPUT_ARGUMENT.get(op, 0)

        @functools.wraps(original)
        def collective(*args: Any, **kwargs: Any) -> Any:
            sent = (
                args[position]
                if len(args) > position
                else next((kwargs[k] for k in _INPUT_KEYWORDS if k in kwargs), None)
            )
            group = kwargs.get("group")
            world = dist.get_world_size(group) if dist.is_initialized() else 1
            attributes = {"op": op, "bytes": _nbytes(sent), "world_size": world}
            token = timer.begin("collective", _on_cuda(sent), attributes)
            try:
                return original(*args, **kwargs)
            finally:
                timer.end(token)

        return collective

    def _timed_checkpoint(self, name: str, original: Callable) -> Callable:
        timer = self.timer

        @functools.wraps(original)
        def checkpoint(*args: Any, **kwargs: Any) -> Any:
            target = (
                args[1]
                if name == "checkpoint.save" and len(args) > 1
                else (args[0] if name == "checkpoint.load" and args else kwargs.get("f"))
            )
            if not isinstance(target, (str, os.PathLike)):
                return original(*args, **kwargs)  # a buffer or file object: not a checkpoint on storage
            token = timer.begin(name, False, {"path": os.fspath(target), "bytes": None})
            try:
                return original(*args, **kwargs)
            finally:
                timer.end(token)

        return checkpoint


class instrument_dataloader:
    """Wraps a DataLoader (any iterable): the wait for each batch is the next step's ``data`` phase."""

    def __init__(self, loader: Iterable, training: TrainingInstrumentor | None = None) -> None:
        self.loader = loader
        self.training = training

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator:
        training = self.training or active()
        iterator = iter(self.loader)
        while True:
            start = time.perf_counter_ns()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            if training is not None:
                training.recorder.add_phase("data", start, time.perf_counter_ns())
            yield batch


def to_device(
    batch: Any,
    device: torch.device | str,
    non_blocking: bool = True,
    training: TrainingInstrumentor | None = None,
    timer: PhaseTimer | None = None,
) -> Any:
    """Move a batch (tensors in dicts/lists/tuples) to ``device``, timed as the ``h2d`` phase."""
    training = training or active()
    device = torch.device(device)

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=non_blocking)
        if isinstance(value, Mapping):
            return (
                type(value)({k: move(v) for k, v in value.items()})
                if isinstance(value, dict)
                else {k: move(v) for k, v in value.items()}
            )
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple batch
            return type(value)(*(move(v) for v in value))
        if isinstance(value, (list, tuple)):
            return type(value)(move(v) for v in value)
        if hasattr(value, "to") and callable(value.to):  # e.g. a tokenizer's BatchEncoding
            return value.to(device)
        return value

    if training is None:
        return move(batch)
    timer = timer or PhaseTimer(training.recorder)
    token = timer.begin("h2d", device.type == "cuda", {"bytes": _nbytes(batch)})
    try:
        return move(batch)
    finally:
        timer.end(token)
