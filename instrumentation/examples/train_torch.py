"""A real (small) PyTorch training loop, instrumented automatically by factorylens: an MLP on a
synthetic regression task with a DataLoader, SGD, an all-reduce of the loss across ranks (gloo on
CPU, NCCL on GPUs), and ``torch.save`` checkpoints. Needs ``pip install 'factorylens[torch]'``.

    python -m factorylens.instrumentation.examples.train_torch --steps 200
    torchrun --nproc-per-node 2 -m factorylens.instrumentation.examples.train_torch --distributed
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import factorylens.instrumentation as fl
from factorylens.instrumentation.torch import TorchInstrumentor, instrument_dataloader, to_device


def make_model(features: int = 16, hidden: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def train(
    steps: int = 100,
    batch_size: int = 64,
    features: int = 16,
    checkpoint_every: int = 50,
    checkpoint_dir: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    model: nn.Module | None = None,
) -> dict[str, float]:
    torch.manual_seed(seed)
    x = torch.randn(steps * batch_size, features)
    y = torch.sin(x @ torch.linspace(-1, 1, features)).unsqueeze(1)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=True)
    model = (model or make_model(features)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    instrumentor = TorchInstrumentor(model=model).instrument() if fl.active() else None
    directory = Path(checkpoint_dir or tempfile.mkdtemp(prefix="factorylens-ckpt-"))
    losses = []
    try:
        for number, (inputs, targets) in enumerate(instrument_dataloader(loader), start=1):
            with fl.step(samples=inputs.shape[0]):
                inputs, targets = to_device((inputs, targets), device)
                loss = nn.functional.mse_loss(model(inputs), targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                reported = loss.detach().clone()
                if dist.is_initialized():
                    dist.all_reduce(reported)
                    reported /= dist.get_world_size()
                if checkpoint_every and number % checkpoint_every == 0:
                    torch.save(model.state_dict(), directory / f"step-{number:07d}.pt")
            losses.append(float(reported))
    finally:
        if instrumentor is not None:
            instrumentor.uninstrument()
    return {"first_loss": losses[0], "last_loss": losses[-1]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--job-id", default=None)
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="join a process group (torchrun's variables; gloo on CPU, nccl on GPU)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    if args.distributed:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    fl.init(job_id=args.job_id)
    try:
        result = train(steps=args.steps, device=device)
    finally:
        fl.shutdown()
        if dist.is_initialized():
            dist.destroy_process_group()
    print(f"loss {result['first_loss']:.4f} -> {result['last_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
