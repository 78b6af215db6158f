"""Peak memory and step time of long sequences, with and without ``time_checkpoint`` (issue 19).

A training step (forward over the sequence, loss on the last output,
backward) at B=64 I=32 H=128, for seqframe's cells with and without
``time_checkpoint=K`` and torch.nn.LSTM beside them. Each configuration runs
in its own process, so that its peak RSS (``ru_maxrss``) is its own: pinned
to one core (``taskset``, where there is one), one torch thread, subnormal
floats flushed (else long sequences hit x86's ~100x subnormal slowdown).
Times: median of ``--repeats`` steps after one warm-up step; at T above
1,000 one step without warm-up (each step there allocates its buffers anew).
Prints a markdown table::

    .venv/bin/python scripts/long_memory.py                       # T = 1,000 and 10,000, K = 100
    .venv/bin/python scripts/long_memory.py --steps 2000 --k 50 --models lstm gru --mmap-threshold 65536
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from typing import List, Optional

BATCH, INPUT, HIDDEN = 64, 32, 128
MODELS = ("lstm", "gru", "mingru", "peephole_lstm", "nn.LSTM")


def peak_mib() -> float:
    """This process's peak resident memory so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resident_mib() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure(model: str, steps: int, chunk: Optional[int], repeats: int) -> dict:
    """One configuration, in this process: the step time, the peak RSS, and the peak over the RSS
    after a short warm-up step (which loads the kernels' code, so that the difference is the step's data)."""
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    if model == "nn.LSTM":
        layer, paths = torch.nn.LSTM(INPUT, HIDDEN, batch_first=True), ["torch"]
    else:
        from seqframe import Recurrent

        layer = Recurrent(model, INPUT, HIDDEN, time_checkpoint=chunk)
        paths = layer.paths()

    def step(length: int) -> float:
        x = torch.randn(BATCH, length, INPUT)
        start = time.perf_counter()
        out, _ = layer(x)
        out[:, -1].square().mean().backward()
        layer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step(min(steps, 3 * chunk if chunk else 300))
    before = resident_mib()
    if repeats > 1:
        step(steps)
    times = [step(steps) for _ in range(repeats)]
    peak = peak_mib()
    return {"ms": 1000 * statistics.median(times), "peak_mib": peak, "step_mib": peak - before, "paths": paths}


def run_one(model: str, steps: int, chunk: Optional[int], repeats: int, cpu: int, mmap: Optional[int]) -> dict:
    """:func:`measure` in a fresh process (pinned to ``cpu`` when taskset exists)."""
    env = dict(os.environ, **({"MALLOC_MMAP_THRESHOLD_": str(mmap)} if mmap else {}))
    command = [sys.executable, __file__, "--one", model, str(steps), str(chunk or 0), str(repeats)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(args: argparse.Namespace) -> List[str]:
    lines = [
        f"B={BATCH} I={INPUT} H={HIDDEN}, one layer, one thread; training step = forward, loss on the last output, "
        "backward. Peak RSS of the whole process; the step's share: peak minus the RSS after a short warm-up step.",
        "",
        "| model | T | time_checkpoint | path | step (ms) | peak RSS (MiB) | step's share (MiB) |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for steps in args.steps:
        repeats = args.repeats if steps <= 1000 else 1
        for model in args.models:
            for chunk in (None,) if model == "nn.LSTM" else (None, args.k):
                r = run_one(model, steps, chunk, repeats, args.cpu, args.mmap_threshold)
                lines.append(
                    f"| {model} | {steps:,} | {chunk or '-'} | {'/'.join(r['paths'])} | {r['ms']:,.0f} "
                    f"| {r['peak_mib']:,.0f} | {r['step_mib']:,.0f} |"
                )
                print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--one":
        model, steps, chunk, repeats = argv[1], int(argv[2]), int(argv[3]) or None, int(argv[4])
        print(json.dumps(measure(model, steps, chunk, repeats)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 10000], help="sequence lengths T")
    parser.add_argument("--k", type=int, default=100, help="time_checkpoint: steps per recomputed chunk")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="cells, or nn.LSTM")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per configuration at T <= 1,000")
    parser.add_argument("--cpu", type=int, default=1, help="the core each run is pinned to")
    parser.add_argument(
        "--mmap-threshold", type=int, default=None, metavar="BYTES",
        help="glibc's MALLOC_MMAP_THRESHOLD_ for the runs (e.g. 65536: freed large buffers go back to the "
        "system at once; by default glibc raises its threshold and keeps freed chunk-sized buffers resident)",
    )
    print("\n".join(table(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
