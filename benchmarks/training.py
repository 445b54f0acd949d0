"""Training and inference speed of each CNN branch and profile on this machine.

    python benchmarks/training.py [--threads 2] [--steps 3]

Random inputs of the front-ends' shapes; SGD with the paper's settings. Prints samples
per second for a training step (forward, backward, update) and for inference (eval mode,
no gradients), and the peak resident memory. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from avemotion.models import branch_spec, build_audio_cnn, build_video_cnn, count_parameters
from avemotion.params import load_params, validate_params

N_CLASSES = 8


def measure(
    model: torch.nn.Module, shape: tuple[int, ...], batch: int, steps: int
) -> tuple[float, float]:
    x = torch.randn(batch, *shape)
    y = torch.randint(0, N_CLASSES, (batch,))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-5)
    model.train()
    for step in range(steps + 1):  # the first step warms up and is not timed
        if step == 1:
            began = time.perf_counter()
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    train = batch * steps / (time.perf_counter() - began)
    model.eval()
    with torch.no_grad():
        model(x)
        began = time.perf_counter()
        for _ in range(steps):
            model(x)
    return train, batch * steps / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tree = load_params("params.yaml").model_dump()
    print(f"torch {torch.__version__}, {args.threads} threads, device cpu, {N_CLASSES} classes")
    print(f"{'branch':6} {'profile':7} {'params':>11} {'batch':>5} {'train/s':>9} {'infer/s':>9}")
    for profile in ("cpu", "paper"):
        params = validate_params({**tree, "base": {**tree["base"], "profile": profile}})
        for branch in ("audio", "video"):
            spec = branch_spec(params, branch)
            torch.manual_seed(0)
            if branch == "audio":
                model, shape, batch = build_audio_cnn(N_CLASSES, spec), (3, 30, 100), 100
            else:
                size = spec.input_size
                model, shape = build_video_cnn(N_CLASSES, spec), (3, 16, size, size)
                batch = 16 if profile == "cpu" else 2
            steps = args.steps if (branch, profile) != ("video", "paper") else 1
            train, infer = measure(model, shape, batch, steps)
            print(
                f"{branch:6} {profile:7} {count_parameters(model):>11,} {batch:>5} "
                f"{train:>9.1f} {infer:>9.1f}"
            )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
