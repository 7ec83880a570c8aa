"""Cost of one DP-SGD step against a plain step (the baseline, same run), per model: per-sample
gradients with torch.func (what the simulator's `PrivateLoopEngine` uses) and with Opacus's hooks
(what a node's `make_private` uses), each followed by clipping + noise.

    nice -n 10 .venv/bin/python bench/dp_step.py            # ~1 minute
    .venv/bin/python bench/dp_step.py --steps 5 --batch 32
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from swarm.models import build_model
from swarm.privacy import clip_and_noise, quiet_opacus

SHAPES = {"fashion-cnn": (1, 28, 28), "digits-mlp": (1, 8, 8), "lenet": (3, 32, 32)}


def timed(step: Callable[[], None], steps: int) -> float:
    step()  # warm-up (vmap tracing, allocator)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def measure(name: str, batch: int, steps: int) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(batch, *SHAPES[name]), torch.randint(0, 10, (batch,))
    model = build_model(name, in_channels=SHAPES[name][0])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def plain() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    params = {k: v.detach() for k, v in model.named_parameters()}
    per_sample = vmap(grad(lambda p, xi, yi: nn.functional.cross_entropy(
        functional_call(model, p, (xi[None],)), yi[None])), in_dims=(None, 0, 0))
    ones, std = torch.ones(1, batch, dtype=torch.bool), torch.tensor([1.0])

    def func() -> None:
        g = per_sample(params, x, y)
        update = clip_and_noise({k: v[None] for k, v in g.items()}, ones, 1.0, std, batch)
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.sub_(0.01 * update[k][0])

    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    with quiet_opacus():
        wrapped = GradSampleModule(build_model(name, in_channels=SHAPES[name][0]))
        dp_opt = DPOptimizer(torch.optim.SGD(wrapped.parameters(), lr=0.01), noise_multiplier=1.0,
                             max_grad_norm=1.0, expected_batch_size=batch)

    def hooks() -> None:
        with quiet_opacus():
            dp_opt.zero_grad()
            nn.functional.cross_entropy(wrapped(x), y).backward()
            dp_opt.step()

    base = timed(plain, steps)
    print(f"{name}, batch {batch}: plain {base * 1e3:.1f} ms/step")
    for label, fn in (("torch.func DP", func), ("Opacus hooks DP", hooks)):
        t = timed(fn, steps)
        print(f"  {label:16s} {t * 1e3:7.1f} ms/step  {t / base:5.2f}x plain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in ("fashion-cnn", "digits-mlp"):
        measure(name, args.batch, args.steps)


if __name__ == "__main__":
    main()
