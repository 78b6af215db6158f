"""Render the generated parts of the docs from the code, so that they cannot drift from it.

* ``docs/configuration.md``: every key of :mod:`seqframe.harness.schema` with
  its type, range or choices, default and comment (both read from
  ``conf/config.yaml``), then every config group with its files and each
  file's first sentence;
* in ``docs/layout.md``, between marker comments: every module of the package
  by layer with the first paragraph of its docstring, and the table of module
  names from before 0.2 (:data:`seqframe._aliases.MOVED`).

``python -m seqframe.tools.config_reference`` rewrites them; ``--check`` only
says whether they are current (exit status 1 if not). tests/test_docs.py runs
the same comparison.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
import sys
import typing
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import yaml

import seqframe
from seqframe._aliases import MOVED
from seqframe.harness import schema

CONFIGURATION_PAGE = "configuration.md"
LAYOUT_PAGE = "layout.md"
LAYERS = ("root", "core", "data", "harness", "runs", "tools", "testing")  # as tests/test_layout.py orders them
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")


# --- reading conf/ -------------------------------------------------------------------------------------------------


def _split_comment(text: str) -> Tuple[str, str]:
    """A YAML line's value and its trailing comment (a ``#`` after a space, outside quotes)."""
    quote = None
    for i, char in enumerate(text):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), ""


def key_comments(text: str) -> Dict[str, str]:
    """Dotted key -> its trailing comment, for a block-style YAML file such as ``conf/config.yaml``.

    A comment-only line indented past its key's line continues that key's comment.
    """
    comments: Dict[str, str] = {}
    path: List[Tuple[int, str]] = []
    last: Optional[str] = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            indent = len(line) - len(line.lstrip(" "))
            if last is not None and comments.get(last) and indent > len(path[-1][1]) + path[-1][0]:
                comments[last] += " " + stripped.lstrip("#").strip()
            continue
        match = _KEY_LINE.match(line)
        if not match:
            last = None
            continue
        indent = len(match["indent"])
        path = [(i, k) for i, k in path if i < indent] + [(indent, match["key"])]
        last = ".".join(k for _, k in path)
        comments[last] = _split_comment(match["rest"])[1]
    return comments


def first_comment(path: Path) -> str:
    """The first sentence of a YAML file's opening comment (``# @package`` lines say where, not what)."""
    words: List[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped.startswith("#") or stripped.startswith("# @package"):
            if words or (stripped and not stripped.startswith("#")):
                break
            continue
        words.append(stripped.lstrip("#").strip())
        sentence = re.match(r"(.*?\.)(?:\s+[A-Z(]|$)|(.*:)$", " ".join(words))
        if sentence:
            return sentence[1] or sentence[2][:-1] + "."
    return " ".join(words)


def defaults_comments(text: str) -> Dict[str, str]:
    """Group -> the comment on its line of the defaults list (``- cell: gru  # the recurrent cell: ...``)."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^\s*-\s*(?P<group>[\w/]+)\s*:(?P<rest>.*)$", line)
        if match:
            found[match["group"]] = _split_comment(match["rest"])[1]
    return found


def _defaults_list(config: Dict[str, Any]) -> Dict[str, Optional[str]]:
    """Group -> the option ``conf/config.yaml`` picks (None for an optional group that is off)."""
    chosen: Dict[str, Optional[str]] = {}
    for entry in config.get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                chosen[str(group)] = None if option is None else str(option)
    return chosen


# --- formatting ----------------------------------------------------------------------------------------------------


def _text(text: str) -> str:
    """Text as table-cell markdown: code spans kept, the rest escaped (no stray emphasis, tags or cell breaks)."""
    parts = re.split(r"(`[^`]*`)", text)
    escaped = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            escaped.append(part.replace("|", "`\\|`"))  # a pipe outside the code: one escape works everywhere
        else:
            escaped.append(
                part.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_").replace("<", "&lt;")
                .replace("|", "\\|").replace("[", "\\[")
            )
    return "".join(escaped)


def _value(value: Any) -> str:
    """A default as YAML would write it, in a code span."""
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
        return f"`{{{inner}}}`"
    return f"`{_plain(value)}`"


def _plain(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _type_name(annotation: Any) -> str:
    """``Optional[int]`` -> ``int or null``; ``Union[int, str, None]`` -> ``int or str or null``;
    a nested schema -> ``section``."""
    if typing.get_origin(annotation) is typing.Union:
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(annotation))
    if dataclasses.is_dataclass(annotation):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(metadata: Any) -> str:
    """The choices and the range a field allows (``threads``: ``auto`` or a number >= 1)."""
    choices = ", ".join(f"`{c}`" for c in metadata.get("choices") or ())
    low, high = metadata.get("min"), metadata.get("max")
    if low is not None and high is not None:
        span = f"{low} to {high}"
    else:
        span = f">= {low}" if low is not None else (f"<= {high}" if high is not None else "")
    return " or ".join(part for part in (choices, span) if part)


def _schema_rows(cls: type, config: Dict[str, Any], comments: Dict[str, str], prefix: str = "") -> Iterator[str]:
    """One table row per leaf key of the dataclass ``cls``, nested dataclasses flattened to dotted keys."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        annotation = hints[field.name]
        if dataclasses.is_dataclass(annotation):
            yield from _schema_rows(annotation, config.get(field.name) or {}, comments, f"{key}.")
            continue
        default = _value(config[field.name]) if field.name in config else "(not in conf/config.yaml)"
        cells = [f"`{key}`", _type_name(annotation), _bounds(field.metadata), default, _text(comments.get(key, ""))]
        yield "| " + " | ".join(cells) + " |"


# --- the pages -----------------------------------------------------------------------------------------------------


def render_configuration(conf: Path) -> str:
    """The whole of docs/configuration.md, from the schema and the config tree at ``conf``."""
    text = (conf / "config.yaml").read_text()
    config = yaml.safe_load(text)
    comments = key_comments(text)
    chosen, about_group = _defaults_list(config), defaults_comments(text)
    lines = [
        "# Configuration reference",
        "",
        "<!-- generated by `python -m seqframe.tools.config_reference` from seqframe/harness/schema.py and conf/;"
        " do not edit: tests/test_docs.py checks that it is current -->",
        "",
        "`seqframe train` (alias `seqframe-train`) is a Hydra app: `conf/config.yaml` picks one file of each",
        "config group, and every key can be overridden on the command line (`model.hidden_size=128`,",
        "`cell=lstm`). `seqframe train --cfg job` prints the composed config; `--help` lists the groups.",
        "",
        "## Top-level and `model` keys",
        "",
        "These keys are described by the dataclasses in `seqframe/harness/schema.py`: a value of the wrong",
        "type, out of range or not among the choices is refused before anything trains (exit status 2).",
        "Defaults and comments are those of `conf/config.yaml`.",
        "",
        "| key | type | range or choices | default | meaning |",
        "| --- | --- | --- | --- | --- |",
        *_schema_rows(schema.TopLevelConfig, config, comments),
        "",
        "The keys of `data`, `trainer`, `callbacks`, `logger`, `model.optimizer` and `model.scheduler` are",
        "the arguments of the class that each node's `_target_` names, and are checked against its",
        "signature; a cell's keys (`cell.<option>`) are the keyword arguments of its constructor. Their",
        "defaults and comments are in the group files below.",
        "",
        "## Config groups",
        "",
        "Choose a file of a group with `GROUP=NAME` (e.g. `data=copy`); the files live in `conf/GROUP/`.",
        "Installed plugin cells are `cell=` choices too, without a file in `conf/cell/`.",
    ]
    groups = sorted(
        str(path.parent.relative_to(conf)) for path in conf.rglob("*.yaml") if path.parent != conf
    )
    for group in dict.fromkeys(groups):
        lines += ["", f"### `{group}`", ""]
        if group in chosen:
            pick = chosen[group]
            about = _text(about_group.get(group, ""))
            default = "none" if pick is None else f"`{pick}`"
            lines += [f"Default: {default}" + (f" — {about}." if about else "."), ""]
        lines += ["| option | file | what |", "| --- | --- | --- |"]
        for path in sorted((conf / group).glob("*.yaml")):
            lines.append(f"| `{path.stem}` | `conf/{group}/{path.name}` | {_text(first_comment(path))} |")
    return "\n".join(lines) + "\n"


def markdown_of_rest(text: str) -> str:
    """reST inline markup as markdown: ``:class:`~a.B``` -> `` `B` `` (``~``: the last name, as in Sphinx),
    double backquotes -> single, and a paragraph's closing ``::`` -> ``:``."""
    text = _ROLE.sub(lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return re.sub(r"(?<=\S)::$", ":", text, flags=re.M)


def _summary(path: Path) -> str:
    """The first paragraph of a module's docstring, on one line."""
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return " ".join(docstring.split("\n\n")[0].split())


def render_module_index(package: Path) -> str:
    """Every module of the package at ``package``, layer by layer, with what its docstring says it is for."""
    by_layer: Dict[str, List[str]] = {layer: [] for layer in LAYERS}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        layer = parts[1] if len(parts) > 2 and parts[1] in LAYERS else "root"
        by_layer[layer].append(f"| `{name}` | {_text(markdown_of_rest(_summary(path)))} |")
    lines: List[str] = []
    for layer, rows in by_layer.items():
        title = "the package root" if layer == "root" else f"`seqframe.{layer}`"
        lines += [f"#### {title}", "", "| module | what it is for |", "| --- | --- |", *rows, ""]
    return "\n".join(lines).rstrip("\n")


def render_moved_table() -> str:
    """The markdown table of old module names and where they live now."""
    rows = [f"| `{old}` | `{new}` |" for old, new in sorted(MOVED.items())]
    return "\n".join(["| old module (before 0.2) | now |", "| --- | --- |", *rows])


def _markers(name: str) -> Tuple[str, str]:
    return (
        f"<!-- generated: {name} (python -m seqframe.tools.config_reference); do not edit -->",
        f"<!-- /generated: {name} -->",
    )


def with_block(page: str, name: str, content: str) -> str:
    """``page`` with the generated block ``name`` (between its two marker comments) replaced by ``content``."""
    begin, end = _markers(name)
    start, stop = page.find(begin), page.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"the page lacks the markers {begin!r} ... {end!r}")
    return page[:start] + f"{begin}\n\n{content}\n\n" + page[stop:]


def fresh_pages(docs: Path, conf: Path) -> Dict[Path, str]:
    """Each generated page -> its text as the code makes it now."""
    layout = (docs / LAYOUT_PAGE).read_text()
    layout = with_block(layout, "modules", render_module_index(Path(seqframe.__file__).parent))
    layout = with_block(layout, "moved", render_moved_table())
    return {docs / CONFIGURATION_PAGE: render_configuration(conf), docs / LAYOUT_PAGE: layout}


def stale_pages(docs: Path, conf: Path) -> Dict[Path, str]:
    """Page -> its fresh text, for each generated page whose committed text differs."""
    fresh = fresh_pages(docs, conf)
    return {path: text for path, text in fresh.items() if not path.is_file() or path.read_text() != text}


def main(argv: Optional[List[str]] = None) -> int:
    from seqframe.harness.train import config_dir

    parser = argparse.ArgumentParser(
        prog="python -m seqframe.tools.config_reference", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="the docs folder (default: ./docs)")
    parser.add_argument("--check", action="store_true", help="only report stale pages; exit status 1 if any")
    args = parser.parse_args(argv)
    stale = stale_pages(args.docs, config_dir())
    for path, text in stale.items():
        if args.check:
            print(f"stale: {path}", file=sys.stderr)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
