"""A real (small) training loop in numpy, instrumented with factorylens: a two-layer MLP learning a
noisy non-linear regression with mini-batch SGD, hand-written backprop, and periodic checkpoints.

``device_time_s`` stands in for the GPU work of a big model (slept inside forward and backward,
scaled by ``slowdown()``), ``collective_time_s`` for the gradient all-reduce, ``checkpoint_time_s``
for writing a big checkpoint and ``loader_delay_s`` for a slow input pipeline, each scaled by its own
slowdown. That is how ``factorylens demo`` couples this loop to the simulated cluster: a throttled
GPU slows compute, fabric congestion the all-reduce, a slow mount the checkpoints, a starved host
the input pipeline.

    python -m factorylens.instrumentation.examples.train_numpy --steps 300 --job-id demo
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

import factorylens.instrumentation as fl

FLOPS_PER_SAMPLE_PER_WEIGHT = 6  # forward 2 + backward 4 multiply-adds per weight


def batches(rng: np.random.Generator, batch_size: int, features: int, delay_s: Callable[[], float]) -> Iterator[tuple]:
    """An endless input pipeline: synthetic samples of y = sin(x·w) + noise."""
    w = np.linspace(-1.0, 1.0, features)
    while True:
        delay = delay_s()
        if delay:
            time.sleep(delay)  # a slow reader (decode, augmentation, network storage)
        x = rng.normal(size=(batch_size, features))
        yield x, np.sin(x @ w)[:, None] + 0.05 * rng.normal(size=(batch_size, 1))


def train(
    steps: int = 200,
    batch_size: int = 64,
    tokens_per_sample: int = 0,
    features: int = 16,
    hidden: int = 64,
    lr: float = 0.05,
    checkpoint_every: int = 100,
    checkpoint_dir: str | None = None,
    device_time_s: float = 0.0,
    slowdown: Callable[[], float] = lambda: 1.0,
    loader_delay_s: float = 0.0,
    data_slowdown: Callable[[], float] = lambda: 1.0,
    collective_time_s: float = 0.0,
    collective_slowdown: Callable[[], float] = lambda: 1.0,
    checkpoint_time_s: float = 0.0,
    checkpoint_slowdown: Callable[[], float] = lambda: 1.0,
    seed: int = 0,
    stop: threading.Event | None = None,
) -> dict[str, float]:
    """Train and return the first and last loss; instrumented when ``fl.init()`` was called.
    ``tokens_per_sample``: the sequence length the loop stands in for (reported as tokens; 0: none)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(scale=1 / np.sqrt(features), size=(features, hidden))
    w2 = rng.normal(scale=1 / np.sqrt(hidden), size=(hidden, 1))
    directory = Path(checkpoint_dir or tempfile.mkdtemp(prefix="factorylens-ckpt-"))
    first_loss = last_loss = float("nan")
    pipeline = batches(rng, batch_size, features, lambda: loader_delay_s * data_slowdown())
    for number, (x, y) in enumerate(fl.timed(pipeline), start=1):
        if number > steps or (stop is not None and stop.is_set()):
            break
        with fl.step(samples=batch_size, tokens=batch_size * tokens_per_sample):
            with fl.forward():
                h = np.tanh(x @ w1)
                prediction = h @ w2
                loss = float(np.mean((prediction - y) ** 2))
                if device_time_s:
                    time.sleep(device_time_s / 3 * slowdown())
            with fl.backward():
                grad_out = 2 * (prediction - y) / batch_size
                grad_w2 = h.T @ grad_out
                grad_w1 = x.T @ ((grad_out @ w2.T) * (1 - h**2))
                if device_time_s:
                    time.sleep(device_time_s * 2 / 3 * slowdown())
            if collective_time_s:  # data-parallel ranks average their gradients
                with fl.collective(bytes=grad_w1.nbytes + grad_w2.nbytes, op="all_reduce"):
                    time.sleep(collective_time_s * collective_slowdown())
            with fl.optimizer():
                w1 -= lr * grad_w1
                w2 -= lr * grad_w2
            if checkpoint_every and number % checkpoint_every == 0:
                path = directory / f"step-{number:07d}.npz"
                with fl.checkpoint_save(path):
                    np.savez(path, w1=w1, w2=w2)
                    if checkpoint_time_s:
                        time.sleep(checkpoint_time_s * checkpoint_slowdown())
        first_loss = loss if number == 1 else first_loss
        last_loss = loss
    return {"first_loss": first_loss, "last_loss": last_loss}


def flops_per_sample(features: int, hidden: int) -> float:
    return FLOPS_PER_SAMPLE_PER_WEIGHT * (features * hidden + hidden)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--tokens-per-sample", type=int, default=0, metavar="N", help="report N tokens per sample (a sequence length)"
    )
    parser.add_argument("--job-id", default=None, help="default: FACTORYLENS_JOB_ID or 'local'")
    parser.add_argument("--team", default=None)
    parser.add_argument(
        "--device-time", type=float, default=0.0, metavar="SECONDS", help="simulated accelerator time per step"
    )
    parser.add_argument(
        "--loader-delay", type=float, default=0.0, metavar="SECONDS", help="simulated input-pipeline time per batch"
    )
    parser.add_argument(
        "--print-every",
        type=int,
        default=0,
        metavar="N",
        help="print where every N-th step's time went (and every slow step)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    fl.init(
        job_id=args.job_id,
        team=args.team,
        model_flops_per_sample=flops_per_sample(16, 64),
        console=bool(args.print_every),
        span_every_steps=args.print_every or 100,
    )
    try:
        result = train(
            steps=args.steps,
            batch_size=args.batch_size,
            tokens_per_sample=args.tokens_per_sample,
            device_time_s=args.device_time,
            loader_delay_s=args.loader_delay,
        )
    finally:
        fl.shutdown()
    print(f"loss {result['first_loss']:.4f} -> {result['last_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
