"""Training-step time over long sequences, with and without flushing subnormals (issue 19).

A gradient flowing back over many steps decays into subnormal floats; on CPUs
that process them slowly, the backward then slows down by up to 10x. This
script times a training step (forward over the sequence, MSE loss on the last
output, backward) of torch.nn's LSTM and GRU beside seqframe's, at several
lengths, subnormals kept (`flush off`) and flushed (`flush on`), and counts
the time steps whose input gradient holds subnormal values, and for the LSTM the subnormal values
in the gradients of its states. ``lstm (nn
weights)`` is seqframe's lstm with nn.LSTM's weights copied in: the same
fused kernel on the same numbers, so it separates a code-path difference
from a difference in the values (initialisation) that the kernel sees.

    .venv/bin/python scripts/long_sequences.py                       # T = 100, 200, 1000
    .venv/bin/python scripts/long_sequences.py --lengths 100 1000 --repeats 3

One thread, every measurement interleaved in one process, medians; ratios are
to torch.nn's kernel in the same run. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from seqframe import Recurrent

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32; nonzero values below it are subnormal
Models = Dict[str, nn.Module]
REFERENCE = {"lstm": "nn.LSTM", "lstm (nn weights)": "nn.LSTM", "gru": "nn.GRU"}  # ratio of each to


def build_models(input_size: int, hidden_size: int) -> Models:
    """torch.nn's fused LSTM and GRU, seqframe's built-ins, and seqframe's lstm on nn.LSTM's weights."""
    reference_lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
    copied = Recurrent("lstm", input_size, hidden_size)
    copied.load_torch(reference_lstm)
    return {
        "nn.LSTM": reference_lstm,
        "lstm": Recurrent("lstm", input_size, hidden_size),
        "lstm (nn weights)": copied,
        "nn.GRU": nn.GRU(input_size, hidden_size, batch_first=True),
        "gru": Recurrent("gru", input_size, hidden_size),
    }


def training_step(model: nn.Module, x: Tensor) -> Tensor:
    """Forward over the sequence, MSE to zero on the last output, backward; returns the input's gradient."""
    model.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    out, _ = model(x)
    out[:, -1].pow(2).mean().backward()
    return x.grad


def subnormals(t: Tensor) -> int:
    size = t.abs()
    return int(((size > 0) & (size < TINY)).sum())


def lstm_state_gradients(layer: Recurrent, x: Tensor) -> Tuple[int, int]:
    """Subnormal values in the gradients of the hidden and the cell states ``h_t``, ``c_t`` over all steps
    (the step loop, each state kept, same loss; flush off): what the fused backward computes on inside."""
    torch.set_flush_denormal(False)
    cell = layer.cells[0]
    projected = cell.project(x)
    h = c = torch.zeros(x.shape[0], cell.hidden_size)
    states = []
    for t in range(x.shape[1]):
        h, (h, c) = cell.step(projected[:, t], (h, c))
        h.retain_grad()
        c.retain_grad()
        states.append((h, c))
    h.pow(2).mean().backward()
    return sum(subnormals(h.grad) for h, _ in states), sum(subnormals(c.grad) for _, c in states)


def lstm_variants(models: Models, input_size: int, hidden_size: int) -> Dict[str, Recurrent]:
    """seqframe's lstm on nn.LSTM's weights, on its own (forget-gate bias +1) and with forget_bias=0."""
    return {
        "nn.LSTM's weights": models["lstm (nn weights)"],
        "seqframe's init (forget_bias=1)": models["lstm"],
        "seqframe's init, forget_bias=0": Recurrent("lstm", input_size, hidden_size, cell_options={"forget_bias": 0.0}),
    }


def timed(model: nn.Module, x: Tensor) -> float:
    """Wall seconds of one training step."""
    started = time.perf_counter()
    training_step(model, x)
    return time.perf_counter() - started


def measure(models: Models, x: Tensor, repeats: int) -> Tuple[Dict[Tuple[str, bool], float], Dict[str, int]]:
    """Median seconds per (model, flush) over ``repeats`` interleaved rounds, and subnormal steps per model."""
    times: Dict[Tuple[str, bool], List[float]] = {(name, flush): [] for name in models for flush in (False, True)}
    counts = {}
    torch.set_flush_denormal(False)
    for name, model in models.items():
        grad = training_step(model, x).abs()
        counts[name] = int(((grad > 0) & (grad < TINY)).any(dim=2).any(dim=0).sum())  # also the warm-up
    for _ in range(repeats):
        for flush in (False, True):
            torch.set_flush_denormal(flush)
            for name, model in models.items():
                times[name, flush].append(timed(model, x))
    torch.set_flush_denormal(False)
    return {key: statistics.median(values) for key, values in times.items()}, counts


def tables(results: Dict[int, Tuple[Dict[Tuple[str, bool], float], Dict[str, int]]], names: Sequence[str]) -> str:
    """The Markdown tables: step times with ratios, per-step cost against the shortest T, subnormal steps."""
    lengths = sorted(results)

    def ms(steps: int, name: str, flush: bool) -> str:
        seconds = results[steps][0][name, flush]
        cell = f"{seconds * 1e3:,.0f} ms"
        if name in REFERENCE:
            cell += f" ({seconds / results[steps][0][REFERENCE[name], flush]:.2f})"
        return cell

    lines = ["| T | flush | " + " | ".join(names) + " |", "| --- | --- |" + " --- |" * len(names)]
    for flush in (False, True):
        for steps in lengths:
            row = [ms(steps, name, flush) for name in names]
            lines.append(f"| {steps} | {'on' if flush else 'off'} | " + " | ".join(row) + " |")
    lines += ["", f"Cost per time step relative to T={lengths[0]} (same model, same flush):", ""]
    lines += ["| T | flush | " + " | ".join(names) + " |", "| --- | --- |" + " --- |" * len(names)]
    for flush in (False, True):
        for steps in lengths[1:]:
            row = [
                f"{results[steps][0][name, flush] / steps / (results[lengths[0]][0][name, flush] / lengths[0]):.2f}"
                for name in names
            ]
            lines.append(f"| {steps} | {'on' if flush else 'off'} | " + " | ".join(row) + " |")
    lines += ["", "Time steps whose input gradient holds subnormal values (flush off):", ""]
    lines += ["| T | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for steps in lengths:
        lines.append(f"| {steps} | " + " | ".join(str(results[steps][1][name]) for name in names) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 200, 1000])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(list(argv) or None)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    models = build_models(args.input_size, args.hidden_size)
    results = {}
    for steps in args.lengths:
        x = torch.randn(args.batch, steps, args.input_size)
        results[steps] = measure(models, x, args.repeats)
    print(
        f"B={args.batch} I={args.input_size} H={args.hidden_size}, 1 thread, median of {args.repeats}; "
        f"(ratio) = to torch.nn's kernel in the same run\n"
    )
    print(tables(results, list(models)))
    steps = max(args.lengths)
    x = torch.randn(args.batch, steps, args.input_size)
    total = args.batch * steps * args.hidden_size
    print(f"\nLSTM state gradients at T={steps} (flush off): subnormal values, of {total:,} each\n")
    print("| lstm weights | in dL/dh_t | in dL/dc_t |\n| --- | --- | --- |")
    for name, layer in lstm_variants(models, args.input_size, args.hidden_size).items():
        in_h, in_c = lstm_state_gradients(layer, x)
        print(f"| {name} | {in_h:,} | {in_c:,} |")


if __name__ == "__main__":
    main()
