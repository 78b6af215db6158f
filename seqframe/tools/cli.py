"""The ``seqframe`` command: train, evaluate, predict, generate, export, report, bench, and manage cells.

``seqframe train|eval|predict ARGS`` are exactly ``seqframe-train|-eval|-predict ARGS``
(those names stay as aliases): their arguments are handed on untouched, so
Hydra's ``--help``, ``--cfg job``, ``-m`` and overrides work after ``seqframe train``.
It must stay light: importing this module and printing its help imports
neither torch nor Lightning nor Hydra (each sub-command imports what it needs).
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import json
import sys
from importlib import import_module
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REFERENCE_SIZE = (8, 16)  # the spec's Keras example: 8 features, 16 units


def _auto_path(cls) -> str:
    """What ``backend=auto`` runs: the cell's own scan (``fused``/``scan``) or, without one, the
    ``generated`` kernels (built in the background on first use; ``loop`` with SEQFRAME_GENERATED=off);
    a second path for padded batches when the scan takes no ``lengths``."""
    from seqframe.core.recurrent import Recurrent

    layer = Recurrent(cls, *REFERENCE_SIZE)
    plain, padded = layer.paths()[0], layer.paths(with_lengths=True)[0]
    return plain if plain == padded else f"{plain} ({padded} when padded)"


def describe_cell(info) -> Dict[str, object]:
    """One row of ``seqframe cells``: provenance, size, fast path and options of a cell at the reference size."""
    from torch import Tensor

    from seqframe.core.options import describe_typed_options

    row: Dict[str, object] = {
        "name": info.name,
        "plugin": info.entry_point,
        "distribution": info.distribution,
        "version": info.version,
        "gates": info.cls.gates,
        "cell_state": "yes" if info.cls.has_cell_state else "no",
        "options": ", ".join(describe_typed_options(info.cls)) or "-",
    }
    try:
        cell = info.cls(*REFERENCE_SIZE)
        state = cell.initial_state(1)
        parts = [state] if isinstance(state, Tensor) else list(state)
        shapes = {tuple(t.shape[1:]) for t in parts}
        shape = "[B, " + ", ".join(map(str, shapes.pop())) + "]" if len(shapes) == 1 else "mixed"
        row["params"] = sum(p.numel() for p in cell.parameters())
        row["state"] = f"{len(parts)} x {shape}" if len(parts) > 1 else shape
        row["path"] = _auto_path(info.cls)
    except Exception as exc:  # a plugin's constructor: report, don't crash the listing
        row.update(params="?", state="?", path=f"error: {type(exc).__name__}: {exc}")
    return row


# the table's columns, in order: a key of describe_cell's rows each (a new field is one more entry)
CELL_COLUMNS = ("name", "plugin", "distribution", "version", "params", "state", "gates", "cell_state")
CELL_COLUMNS += ("options", "path")


def _no_match(pattern: str, names: List[str]) -> str:
    close = difflib.get_close_matches(pattern, names, n=1)
    hint = f"; did you mean {close[0]}?" if close else "."
    return f"seqframe cells: no cell matches {pattern!r}{hint} Installed cells: {', '.join(names) or '(none)'}"


def cmd_cells(args: argparse.Namespace) -> int:
    from seqframe.core.registry import broken_plugins, list_cells, registry
    from seqframe.tools.tables import format_table

    rows = [describe_cell(info) for info in list_cells() if fnmatch.fnmatch(info.name, args.pattern)]
    if not rows:  # `seqframe cells janett`: say so, and fail (scripts test the exit status)
        print(_no_match(args.pattern, [info.name for info in list_cells()]), file=sys.stderr)
    problems = [
        {"plugin": b.source.entry_point, "distribution": b.source.distribution, "error": b.error}
        for b in broken_plugins()
    ]
    problems += [
        {"plugin": c.entry_point, "distribution": c.distribution, "error": f"cell name {name!r} is claimed twice"}
        for name, claims in registry().conflicts.items()
        for c in claims
    ]
    if args.json:
        print(json.dumps({"cells": rows, "broken": problems}, indent=2))
        return 0 if rows else 1
    i, h = REFERENCE_SIZE
    headers = [c if c != "params" else f"params@{i}x{h}" for c in CELL_COLUMNS]
    if rows:
        print(format_table(headers, [[row[c] for c in CELL_COLUMNS] for row in rows]))
    if problems:
        print("\nBroken plugins (their cells are unavailable; the others work):")
        print(format_table(["plugin", "distribution", "error"], [list(p.values()) for p in problems]))
    return 0 if rows else 1


def cmd_new_cell(args: argparse.Namespace) -> int:
    from seqframe.tools.scaffold import names_for, new_cell

    target = new_cell(args.name, Path(args.dir))
    print(f"wrote {target}: the {args.name!r} cell in {target / names_for(args.name)['module']}/__init__.py")
    print(f"next: pip install -e {target} && seqframe cells {args.name} && pytest {target}")
    return 0


BENCH_TABLES = ("steps", "scans", "harness", "startup", "lengths", "generated", "generated_startup")


def _positive_ints(option: str, text: str, count: Optional[int] = None) -> Tuple[int, ...]:
    """``"100,1000"`` -> ``[100, 1000]``; anything but positive integers (``count`` of them, if given)
    is refused with the option's name."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1 or count not in (None, len(values)):
        many = f"{count} positive integer(s)" if count else "positive integers"
        raise SystemExit(f"seqframe bench: {option}: write {many} separated by commas, got {text!r}")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    from seqframe.tools.bench import REFERENCES, SIZES, parse_variant, run
    from seqframe.tools.bench_lengths import LengthSweep

    sizes, families = args.sizes.split(","), args.families.split(",")
    only = args.only.split(",") if args.only else [t for t in BENCH_TABLES if not getattr(args, f"no_{t}")]
    for option, given, known in (
        ("--sizes", sizes, SIZES),
        ("--families", families, REFERENCES),
        ("--only", only, BENCH_TABLES),
    ):
        unknown = [s for s in given if s not in known]
        if unknown:
            raise SystemExit(f"seqframe bench: {option}: unknown {unknown}; choose from {', '.join(known)}")
    try:
        variants = [parse_variant(text) for text in args.variant]
    except ValueError as exc:
        raise SystemExit(f"seqframe bench: {exc}") from None
    checkpoint = _positive_ints("--time-checkpoint", args.time_checkpoint, 1)[0] if args.time_checkpoint else None
    lengths = LengthSweep(
        _positive_ints("--lengths", args.lengths),
        _positive_ints("--length-shape", args.length_shape, 3),
        flush_denormal=not args.no_flush_denormal,
        time_checkpoint=checkpoint,
        max_repeat=args.repeat,
    )
    run(
        sizes,
        families,
        args.repeat,
        args.compile,
        harness="harness" in only,
        startup="startup" in only,
        out=Path(args.out) if args.out else None,
        markdown=Path(args.markdown) if args.markdown else None,
        threads=args.threads,
        scans="scans" in only,
        variants=variants,
        steps="steps" in only,
        lengths=lengths if "lengths" in only else None,
        generated="generated" in only,
        generated_startup="generated_startup" in only,
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from seqframe.tools.report import report

    try:
        print(report([Path(d) for d in args.dirs], Path(args.out) if args.out else None))
    except FileNotFoundError as exc:
        print(f"seqframe report: error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from seqframe.runs.export import export, sidecar

    target = export(args.run, args.format, args.out, args.max_len, step=args.step)
    print(f"wrote {target} (checked against the trained model) and {sidecar(target)} (inputs, outputs)")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from seqframe.runs.generate import generate

    print(generate(args.run, args.prompt, args.length, args.temperature, args.top_k, args.seed, not args.no_warmup))
    return 0


TRAIN_SCRIPT = "seqframe-train"
PASSED_ON: Dict[str, Tuple[str, str]] = {  # sub-command: (the module whose main() it runs, its help)
    "train": ("seqframe.harness.app", "train a model, e.g. cell=lstm data=adding (= seqframe-train)"),
    "eval": ("seqframe.runs.evaluate", "a trained run's metrics, on its data or a file (= seqframe-eval)"),
    "predict": ("seqframe.runs.predict", "a trained run's answers for a new file (= seqframe-predict)"),
}


def train_program() -> str:
    """``argv[0]`` for the Hydra app: the ``seqframe-train`` script beside this one, so that Hydra's
    messages name a command that exists and Lightning's DDP launcher, which starts the other ranks
    as ``argv[0] argv[1:]``, re-runs the training and not the ``seqframe`` dispatcher."""
    for folder in (Path(sys.argv[0]).parent, Path(sys.executable).parent):
        if (folder / TRAIN_SCRIPT).is_file():
            return str(folder / TRAIN_SCRIPT)
    return TRAIN_SCRIPT


def pass_on(command: str, arguments: List[str]) -> int:
    """Run ``seqframe COMMAND ARGS`` as the command it stands for, with ``ARGS`` untouched."""
    module = import_module(PASSED_ON[command][0])
    if command != "train":
        return module.main(arguments, prog=f"seqframe {command}")
    saved = sys.argv
    sys.argv = [train_program(), *arguments]  # the Hydra app reads its command line from sys.argv
    try:
        module.main()
    finally:
        sys.argv = saved
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqframe",
        description="Train recurrent models, use them, and manage the cells they are made of.",
        epilog="`seqframe COMMAND --help` shows a command's own options (train: Hydra's help and config groups).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in PASSED_ON.items():  # listed here; main() hands their arguments on unparsed
        commands.add_parser(name, help=help_text, add_help=False)
    export = commands.add_parser("export", help="write a trained model that runs without seqframe (pt2 or ONNX)")
    export.add_argument("run", help="a run dir of seqframe-train (its best checkpoint) or a .ckpt file in one")
    export.add_argument("--format", choices=("pt2", "onnx"), default="pt2", help="pt2: torch.export; onnx: onnxruntime")
    export.add_argument("--out", help="the file to write (default: RUN/export/model.FORMAT)")
    export.add_argument("--max-len", type=int, help="the time size of the exported model (default: the data's max_len)")
    export.add_argument(
        "--step",
        action="store_true",
        help="a step model for streaming: one time step per call, the state as explicit inputs and outputs",
    )
    export.set_defaults(handler=cmd_export)
    generate = commands.add_parser("generate", help="sample text from a trained text model (data=text)")
    generate.add_argument("run", help="a run dir of seqframe-train (its best checkpoint) or a .ckpt file in one")
    generate.add_argument("--prompt", help="the text to continue (default: a new paragraph)")
    generate.add_argument("--length", type=int, default=200, help="how many tokens to generate (default 200)")
    generate.add_argument(
        "--temperature", type=float, default=1.0, help="1: as trained; lower: safer; 0: always the likeliest token"
    )
    generate.add_argument("--top-k", type=int, help="sample only among the K likeliest tokens (default: all)")
    generate.add_argument("--seed", type=int, default=0, help="the same seed gives the same text (default 0)")
    generate.add_argument(
        "--no-warmup",
        action="store_true",
        help="read the prompt from the initial state, not after the end of a paragraph of the training text",
    )
    generate.set_defaults(handler=cmd_generate)
    report = commands.add_parser("report", help="one comparison table (markdown, CSV, JSON) from sweep dirs")
    report.add_argument("dirs", nargs="+", help="sweep or run directories (searched for summary.json)")
    report.add_argument("--out", help="where to write report.md/.csv/.json (default: the first directory)")
    report.set_defaults(handler=cmd_report)
    bench = commands.add_parser("bench", help="time every cell and backend against torch.nn's fused kernels")
    bench.add_argument("--sizes", default="spec,medium,large", help="comma-separated: spec, medium, large")
    bench.add_argument("--families", default="lstm,gru,rnn", help="comma-separated: lstm, gru, rnn")
    bench.add_argument("--repeat", type=int, default=7, help="timed repetitions per model (interleaved)")
    bench.add_argument("--compile", action="store_true", help="also time backend=compile (slow to start)")
    bench.add_argument("--no-harness", action="store_true", help="skip the seqframe-train vs plain loop epoch")
    bench.add_argument("--no-startup", action="store_true", help="skip the start-up times")
    bench.add_argument("--no-scans", action="store_true", help="skip the cells' own scans against their step loops")
    bench.add_argument("--no-lengths", action="store_true", help="skip the length sweep")
    bench.add_argument("--no-steps", action="store_true", help="skip the training-step table of --sizes")
    bench.add_argument(
        "--no-generated", action="store_true", help="skip the equations-only cells (a newcomer's LSTM, MGU, IndRNN)"
    )
    bench.add_argument(
        "--no-generated-startup", action="store_true", help="skip the generated path's cold and warm start-up"
    )
    bench.add_argument("--only", help=f"comma-separated: run only these tables of {', '.join(BENCH_TABLES)}")
    bench.add_argument(
        "--lengths", default="100,1000,10000", help="the length sweep's T (comma-separated; default 100,1000,10000)"
    )
    bench.add_argument("--length-shape", default="64,32,128", help="the length sweep's B,I,H (default 64,32,128)")
    bench.add_argument(
        "--no-flush-denormal",
        action="store_true",
        help="length sweep without torch.set_flush_denormal(True) (subnormal floats: ~100x slower arithmetic)",
    )
    bench.add_argument(
        "--time-checkpoint",
        metavar="K",
        help="length sweep: the cells keep every K-th state and recompute the rest in the backward",
    )
    bench.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="CELL:KEY=VALUE",
        help="also time a cell with these options, e.g. mingru:scan_method=parallel (repeatable)",
    )
    bench.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the targets)")
    bench.add_argument("--out", help="write bench.json and bench.md into this folder")
    bench.add_argument("--markdown", help="also write the markdown table to this file (docs/benchmarks.md)")
    bench.set_defaults(handler=cmd_bench)
    cells = commands.add_parser("cells", help="list the installed cells and broken plugins")
    cells.add_argument("pattern", nargs="?", default="*", help="only cells whose name matches (glob, e.g. 'gru*')")
    cells.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cells.set_defaults(handler=cmd_cells)
    scaffold = commands.add_parser("new-cell", help="write an installable plugin package with a working cell")
    scaffold.add_argument("name", help="the cell's name, as users will type it: cell=NAME")
    scaffold.add_argument("--dir", default=".", help="where to create the package folder (default: here)")
    scaffold.set_defaults(handler=cmd_new_cell)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``seqframe``: run the sub-command named first on the command line."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in PASSED_ON:
        return pass_on(arguments[0], arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    handler: Optional[Callable[[argparse.Namespace], int]] = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from seqframe.errors import SeqframeError

    try:
        return handler(args)
    except SeqframeError as exc:
        print(f"seqframe: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
