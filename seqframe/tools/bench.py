"""``seqframe bench``: training-step speed of every cell and backend, as ratios to torch.nn.

The candidates are the registry's: every installed cell on each backend, timed
for one training step (forward + backward) on the same data, interleaved with
the torch.nn fused kernel of its family in the same run, repetition after
repetition, so that drifts of the machine hit all of them alike. The family
comes from what the cell declares (:func:`family_of`: a cell state -> LSTM,
gates -> GRU, neither -> RNN). The table gives the median and minimum time and
the ratio of medians to that reference. Cells with a sequence path of their
own (``scan``) are also timed against their own step loop on long sequences.
It also times the spec's Keras example per epoch through ``seqframe-train``
against a plain PyTorch loop, the start-up of the commands against
``import torch``, and every model's cost per time step and peak memory at long
sequences (:mod:`seqframe.tools.bench_lengths`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import seqframe
from seqframe.core import generated
from seqframe.tools import bench_lengths

SIZES = {  # name: (batch, time, input, hidden)
    "spec": (8, 10, 8, 16),
    "medium": (64, 100, 32, 128),
    "large": (128, 200, 128, 512),
}
REFERENCES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class Candidate:
    """One row: a model to time for a family, at a size."""

    family: str
    label: str
    build: Callable[[int, int], nn.Module]
    backend: str = "-"
    times: List[float] = field(default_factory=list)


def _recurrent(cell, backend: str, **options) -> Callable[[int, int], nn.Module]:
    return lambda i, h: seqframe.Recurrent(cell, i, h, backend=backend, cell_options=options)


def family_of(cell: Type[seqframe.Cell]) -> str:
    """The torch.nn kernel a cell is timed against, from the structure it declares (``gates``,
    ``has_cell_state``): a cell state makes it LSTM-like, gates without one GRU-like (minGRU too),
    no gates a plain RNN. The built-in lstm, gru and rnn land on their own kernels."""
    if cell.has_cell_state:
        return "lstm"
    return "gru" if cell.gates > 0 else "rnn"


def parse_variant(text: str) -> Tuple[str, Dict[str, Any]]:
    """``CELL:KEY=VALUE[,KEY=VALUE]`` -> ``(cell, options)``; values read as JSON when they parse
    (``3``, ``0.5``, ``true``), else kept as strings (``parallel``)."""
    name, sep, rest = text.partition(":")
    pairs = [item.partition("=") for item in rest.split(",")] if sep else []
    if not name or not pairs or any(not key or not eq for key, eq, _ in pairs):
        raise ValueError(f"--variant {text!r}: write CELL:KEY=VALUE[,KEY=VALUE], e.g. mycell:scan_method=parallel")

    def value(raw: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    return name, {key: value(raw) for key, _, raw in pairs}


def _variant_label(name: str, options: Dict[str, Any]) -> str:
    return name + "".join(f" {k}={v}" for k, v in options.items())


def candidates(
    families: Sequence[str], with_compile: bool, variants: Sequence[Tuple[str, Dict[str, Any]]] = ()
) -> List[Candidate]:
    """Every installed cell on every backend, plus each variant (a cell with options, on ``auto``),
    grouped by family with the torch.nn reference first."""
    backends = ["auto", "loop"] + (["compile"] if with_compile else [])
    classes = {info.name: info.cls for info in seqframe.list_cells()}
    chosen = []
    for family in families:
        reference = REFERENCES[family]
        chosen.append(
            Candidate(
                family,
                f"torch.nn.{reference.__name__} (fused)",
                lambda i, h, r=reference: r(i, h, batch_first=True),
                "reference",
            )
        )
        mine = [name for name, cls in classes.items() if family_of(cls) == family]
        chosen += [Candidate(family, f"{name} ({b})", _recurrent(name, b), b) for name in mine for b in backends]

        chosen += [
            Candidate(family, f"{_variant_label(name, options)} (auto)", _recurrent(name, "auto", **options), "auto")
            for name, options in variants
            if name in mine
        ]
    return chosen


def training_step(model: nn.Module, x: Tensor, last_only: bool = False) -> Callable[[], None]:
    """One training step as a closure; ``last_only``: the loss reads the last output only, so the
    gradient of early steps flows back through every later one (the length sweep's case)."""

    def run() -> None:
        model.zero_grad(set_to_none=True)
        out, _ = model(x)
        (out[:, -1] if last_only else out).sum().backward()

    return run


def time_candidates(
    rows: List[Candidate], size: Sequence[int], repeat: int, warmup: int = 2, min_sample: float = 0.05
) -> None:
    """Fill each row's ``times`` (seconds per step), interleaving the rows within each repetition.

    A sample averages as many consecutive steps as fill ``min_sample`` seconds, so that
    sub-millisecond steps are not lost in timer and scheduling noise.
    """
    batch, steps, inputs, hidden = size
    torch.manual_seed(0)
    x = torch.randn(batch, steps, inputs)
    runs = []
    for row in rows:
        torch.manual_seed(0)
        run = training_step(row.build(inputs, hidden), x)
        for _ in range(warmup):
            run()
        generated.CACHE.wait()  # cells on generated kernels: time them once built, not the loop meanwhile
        run()
        start = time.perf_counter()
        run()
        runs.append((run, max(1, round(min_sample / max(time.perf_counter() - start, 1e-6)))))
    for _ in range(repeat):
        for row, (run, inner) in zip(rows, runs):
            start = time.perf_counter()
            for _ in range(inner):
                run()
            row.times.append((time.perf_counter() - start) / inner)


def _median_ms(times: Sequence[float]) -> float:
    return statistics.median(times) * 1e3


def step_table(
    size_names: Sequence[str],
    families: Sequence[str],
    repeat: int,
    with_compile: bool,
    variants: Sequence[Tuple[str, Dict[str, Any]]] = (),
) -> List[dict]:
    results = []
    for size_name in size_names:
        rows = candidates(families, with_compile and size_name != "large", variants)
        time_candidates(rows, SIZES[size_name], repeat)
        reference = {r.family: _median_ms(r.times) for r in rows if r.backend == "reference"}
        for row in rows:
            results.append(
                {
                    "size": size_name,
                    "shape": "B={} T={} I={} H={}".format(*SIZES[size_name]),
                    "family": row.family,
                    "model": row.label,
                    "backend": row.backend,
                    "median_ms": _median_ms(row.times),
                    "min_ms": min(row.times) * 1e3,
                    "ratio": _median_ms(row.times) / reference[row.family],
                }
            )
            print(
                f"  {size_name:6s} {row.label:38s} {results[-1]['median_ms']:9.2f} ms  x{results[-1]['ratio']:.2f}",
                flush=True,
            )
    return results


SCAN_SIZE = (64, 32, 128)  # batch, input, hidden of the scan table; its time sizes are its lengths


def scanning_cells() -> List[str]:
    """The installed cells with a sequence path of their own (``scan``: a fused kernel, or a
    sequential or parallel scan of a linear recurrence), in registry order."""
    _, inputs, hidden = SCAN_SIZE
    return [info.name for info in seqframe.list_cells() if info.cls(inputs, hidden).has_scan()]


def scan_table(
    repeat: int, lengths: Sequence[int] = (100, 1000), variants: Sequence[Tuple[str, Dict[str, Any]]] = ()
) -> List[dict]:
    """Each scanning cell's scan (and variants) against its own step loop on long sequences."""
    batch, inputs, hidden = SCAN_SIZE
    results = []
    for name in scanning_cells():
        for steps in lengths:
            rows = [
                Candidate(name, f"{name} step loop", _recurrent(name, "loop"), "loop"),
                Candidate(name, f"{name} scan", _recurrent(name, "auto"), "auto"),
            ]
            rows += [
                Candidate(name, f"{_variant_label(name, options)} scan", _recurrent(name, "auto", **options), "auto")
                for variant, options in variants
                if variant == name
            ]
            time_candidates(rows, (batch, steps, inputs, hidden), repeat)
            loop_ms = _median_ms(rows[0].times)
            for row in rows:
                results.append(
                    {
                        "T": steps,
                        "cell": name,
                        "model": row.label,
                        "median_ms": _median_ms(row.times),
                        "min_ms": min(row.times) * 1e3,
                        "ratio": _median_ms(row.times) / loop_ms,
                    }
                )
                print(
                    f"  T={steps:<5d} {row.label:38s} {results[-1]['median_ms']:9.2f} ms  x{results[-1]['ratio']:.2f}",
                    flush=True,
                )
    return results


def _seed_example_data():
    from seqframe.data.synthetic import seed_example

    return seed_example(100, 10, 8, seed=0), seed_example(100, 10, 8, seed=1)


def plain_seed_example_epoch_times(epochs: int) -> List[float]:
    """The spec's Keras example in plain PyTorch: LSTM(16) -> Linear(1), Adam, BCE, batch 8,
    a training pass over 100 samples then a validation pass over 100, per epoch."""
    (x, y), (xv, yv) = _seed_example_data()
    torch.manual_seed(0)
    lstm, head = nn.LSTM(8, 16, batch_first=True), nn.Linear(16, 1)
    optimizer = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-3)
    durations = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(100)
        for i in range(0, 100, 8):
            batch = order[i : i + 8]
            optimizer.zero_grad()
            out, _ = lstm(x[batch])
            loss = F.binary_cross_entropy_with_logits(head(out[:, -1]).squeeze(1), y[batch])
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            correct = 0.0
            for i in range(0, 100, 8):
                logits = head(lstm(xv[i : i + 8])[0][:, -1]).squeeze(1)
                correct += float(((logits > 0).float() == yv[i : i + 8]).sum())
        durations.append(time.perf_counter() - start)
    return durations


def minimal_lightning_epoch_times(epochs: int) -> List[float]:
    """The same model, data and epoch through a bare Lightning Trainer: no logger, checkpoints,
    callbacks or metrics objects. What Lightning's loops cost on their own, to tell them apart
    from what seqframe adds on top."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    (x, y), (xv, yv) = _seed_example_data()

    class Bare(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lstm, self.head = nn.LSTM(8, 16, batch_first=True), nn.Linear(16, 1)
            self.correct = torch.zeros(())

        def _logits(self, batch):
            return self.head(self.lstm(batch[0])[0][:, -1]).squeeze(1)

        def training_step(self, batch, batch_idx):
            return F.binary_cross_entropy_with_logits(self._logits(batch), batch[1])

        def validation_step(self, batch, batch_idx):
            self.correct += ((self._logits(batch) > 0).float() == batch[1]).sum()

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Timer(pl.Callback):
        def __init__(self) -> None:
            self.durations: List[float] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            self.durations.append(time.perf_counter() - self._start)

    torch.manual_seed(0)
    timer = Timer()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(
        Bare(),
        DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True),
        DataLoader(TensorDataset(xv, yv), batch_size=8),
    )
    return timer.durations


def seqframe_train_epoch_times(epochs: int, *overrides: str) -> List[float]:
    """Per-epoch wall times of ``seqframe-train experiment=seed_keras`` (its own epoch timer)."""
    exe = Path(sys.executable).with_name("seqframe-train")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                str(exe),
                "experiment=seed_keras",
                f"trainer.max_epochs={epochs}",
                "trainer.enable_progress_bar=false",
                "test=false",
                "hydra.run.dir=run",
                "hydra/job_logging=disabled",
                *overrides,
            ],
            cwd=tmp,
            check=True,
            capture_output=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        from seqframe.harness.rundir import RunDir

        return RunDir(Path(tmp) / "run").read_summary().epoch_times


GROUPED = 13  # the seed example's 100 sequences in batches of 8: one Lightning step per epoch


def harness_table(epochs: int) -> dict:
    """Seed example per epoch: ``seqframe-train`` (one optimizer step per Lightning step, and all 13
    of an epoch in one: ``steps_per_execution``) and a bare Lightning Trainer vs the plain loop."""
    plain_ms = _median_ms(plain_seed_example_epoch_times(epochs)[1:])
    seqframe_ms = _median_ms(seqframe_train_epoch_times(epochs)[1:])
    grouped_ms = _median_ms(seqframe_train_epoch_times(epochs, f"steps_per_execution={GROUPED}")[1:])
    lightning_ms = _median_ms(minimal_lightning_epoch_times(epochs)[1:])
    return {
        "seqframe_ms": seqframe_ms,
        "grouped_ms": grouped_ms,
        "steps_per_execution": GROUPED,
        "lightning_ms": lightning_ms,
        "plain_ms": plain_ms,
        "ratio": seqframe_ms / plain_ms,
        "grouped_ratio": grouped_ms / plain_ms,
        "lightning_ratio": lightning_ms / plain_ms,
        "epochs": epochs,
    }


def _wall(command: List[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup_table(repeat: int) -> dict:
    bin_dir = Path(sys.executable).parent
    return {
        "import torch": _wall([sys.executable, "-c", "import torch"], repeat),
        "seqframe --help": _wall([str(bin_dir / "seqframe"), "--help"], repeat),
        "seqframe cells": _wall([str(bin_dir / "seqframe"), "cells"], repeat),
        "seqframe-train --help": _wall([str(bin_dir / "seqframe-train"), "--help"], repeat),
    }


def keep_freed_memory() -> bool:
    """Ask glibc to serve every allocation from its heap (``mallopt(M_MMAP_THRESHOLD, 1 GiB)``) and
    to keep freed memory: True if it took. Why: by default glibc maps each allocation above its
    threshold fresh from the kernel and page-faults on first touch. torch.nn's fused LSTM allocates
    ~13 MB per step at the medium size and ran 60 ms per training step in a fresh process, 42 ms once
    glibc had raised its threshold on its own (after a larger buffer was freed), so the reference of
    a ratio changed with what ran before it. Fixed once here, every row is timed at its best."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"Python {platform.python_version()}"
    )


def to_markdown(report: dict) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Date: {report['date']}",
        "",
    ]
    if report.get("steps"):
        lines += [
            "## Training step (forward + backward), ratio to torch.nn's fused kernel of the family, same run",
            "",
            "Median and minimum over the repetitions, interleaved; ratio of medians (lower is faster).",
            "",
            "| size | family | model | backend | median ms | min ms | ratio |",
            "| --- | --- | --- | --- | ---: | ---: | ---: |",
        ]
    for r in report.get("steps", []):
        lines.append(
            f"| {r['size']} ({r['shape']}) | {r['family']} | {r['model']} | {r['backend']} | "
            f"{r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['ratio']:.2f} |"
        )
    if report.get("scans"):
        lines += [
            "",
            "## Scans against the same cell's step loop (B={} I={} H={}, training step)".format(*SCAN_SIZE),
            "",
            "| T | model | median ms | min ms | ratio to the step loop |",
            "| ---: | --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['T']} | {r['model']} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['ratio']:.2f} |"
            for r in report["scans"]
        ]
    if report.get("harness"):
        h = report["harness"]
        lines += [
            "",
            "## The spec's Keras example per epoch (train + validation)",
            "",
            f"Median of {h['epochs'] - 1} epochs (the first left out).",
            "",
            "| run | ms per epoch | ratio to the plain loop |",
            "| --- | ---: | ---: |",
            f"| plain PyTorch loop | {h['plain_ms']:.1f} | 1.00 |",
            f"| bare Lightning Trainer (no logger, checkpoints or callbacks) | {h['lightning_ms']:.1f} "
            f"| {h['lightning_ratio']:.2f} |",
            f"| `seqframe-train experiment=seed_keras` | {h['seqframe_ms']:.1f} | {h['ratio']:.2f} |",
            f"| `seqframe-train experiment=seed_keras steps_per_execution={h['steps_per_execution']}` "
            f"| {h['grouped_ms']:.1f} | {h['grouped_ratio']:.2f} |",
        ]
    if report.get("startup"):
        s = report["startup"]
        lines += ["", "## Start-up (wall time, median)", "", "| command | seconds |", "| --- | ---: |"]
        lines += [f"| `{k}` | {v:.2f} |" for k, v in s.items()]
    if report.get("lengths"):
        lines += bench_lengths.to_markdown(report["lengths"])
    if report.get("generated") or report.get("handwritten") or report.get("generated_startup"):
        from seqframe.tools import bench_generated

        lines += bench_generated.to_markdown(report)
    return "\n".join(lines) + "\n"


def run(
    sizes: Sequence[str],
    families: Sequence[str],
    repeat: int,
    with_compile: bool,
    harness: bool,
    startup: bool,
    out: Optional[Path],
    markdown: Optional[Path],
    threads: int = 1,
    scans: bool = True,
    variants: Sequence[Tuple[str, Dict[str, Any]]] = (),
    steps: bool = True,
    lengths: Optional[bench_lengths.LengthSweep] = None,
    generated: bool = False,
    generated_startup: bool = False,
) -> dict:
    """Run the selected tables, print the markdown, and write it (and JSON) where asked."""
    torch.set_num_threads(threads)
    heap = keep_freed_memory()
    report: Dict[str, Any] = {
        "command": "seqframe bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else " ".join(sys.argv),
        "machine": machine() + (", glibc heap for all allocations (mallopt)" if heap else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if steps:
        report["steps"] = step_table(sizes, families, repeat, with_compile, variants)
    if scans:
        report["scans"] = scan_table(repeat, variants=variants)
    if harness:
        report["harness"] = harness_table(epochs=21)
    if startup:
        report["startup"] = startup_table(repeat=3)
    if lengths is not None:
        report["lengths"] = bench_lengths.length_table(lengths, families, threads)
    if generated or generated_startup:
        from seqframe.tools import bench_generated

        if generated:
            installed = {info.name for info in seqframe.list_cells()}
            plugins = [name for name in ("peephole_lstm", "layernorm_lstm") if name in installed]
            report["generated"] = bench_generated.generated_table(sizes, repeat, plugins)
            report["handwritten"] = bench_generated.handwritten_table(sizes, repeat)
        if generated_startup:
            report["generated_startup"] = bench_generated.startup_table()
    text = to_markdown(report)
    print(text)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "bench.md").write_text(text)
    if markdown:
        markdown.write_text(text)
    return report
