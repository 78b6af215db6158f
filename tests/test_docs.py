"""The docs: the site builds strictly, its generated pages are current, and the README's links resolve."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from seqframe.harness import schema
from seqframe.harness.train import config_dir
from seqframe.tools import config_reference as ref

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REGENERATE = "regenerate with: python -m seqframe.tools.config_reference"


def build_site(config: Path, site: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` (never with --quiet: it hides the warnings that strict mode counts)."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent, capture_output=True, text=True, timeout=300,
    )


def page_text(site: Path, page: str) -> str:
    """A built page's visible text (tags dropped), to check what a reader sees."""
    html = (site / page / "index.html").read_text()
    return re.sub(r"<[^>]+>", "", html)


def schema_keys(cls: type, prefix: str = "") -> typing.List[str]:
    hints = typing.get_type_hints(cls)
    keys = []
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            keys += schema_keys(hints[field.name], f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def test_the_site_builds_strictly_with_api_pages_from_the_docstrings(tmp_path):
    result = build_site(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    site = tmp_path / "site"
    api = page_text(site, "api/seqframe")
    assert "Base class of every recurrent cell" in api  # seqframe.Cell's docstring, through the lazy root
    assert "A multi-layer, optionally bidirectional recurrent network" in api  # Recurrent
    assert "create_cell" in api and "list_cells" in api
    kernels = page_text(site, "api/kernels")
    for name in ("run_steps", "step_mask", "linear_recurrence", "time_blocks"):
        assert name in kernels
    assert "check_cell" in page_text(site, "api/testing")
    assert "UnknownCellError" in page_text(site, "api/errors")
    for page in ("api/seqframe", "api/kernels", "api/testing", "api/errors"):
        assert ":class:" not in page_text(site, page) and ":func:" not in page_text(site, page), page
    assert "model.hidden_size" in page_text(site, "configuration")


def test_a_broken_link_fails_the_strict_build(tmp_path):
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + "\nSee [a page that is not there](no-such-page.md).\n")
    result = build_site(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stdout + result.stderr


def test_the_generated_pages_are_current():
    stale = ref.stale_pages(DOCS, config_dir())
    assert not stale, f"stale generated docs: {', '.join(str(p.relative_to(ROOT)) for p in stale)}; {REGENERATE}"


def test_the_configuration_reference_lists_every_schema_key_and_group():
    page = (DOCS / "configuration.md").read_text()
    for key in schema_keys(schema.TopLevelConfig):
        assert f"| `{key}` |" in page, f"{key} is missing from docs/configuration.md; {REGENERATE}"
    conf = config_dir()
    for path in conf.rglob("*.yaml"):
        if path.parent != conf:
            assert f"`conf/{path.relative_to(conf).as_posix()}`" in page, path


def test_the_reference_takes_types_ranges_defaults_and_comments_from_schema_and_yaml(tmp_path):
    conf = tmp_path / "conf"
    (conf / "cell").mkdir(parents=True)
    (conf / "config.yaml").write_text(
        "defaults:\n"
        "  - cell: fast   # which cell\n"
        "seed: 7   # the seed\n"
        "model:\n"
        "  dropout: 0.25   # between layers\n"
        "  encoder: linear\n"
        "  optimizer:   # any optimizer\n"
        "    _target_: torch.optim.SGD\n"
        "    lr: 0.1\n"
    )
    (conf / "cell" / "fast.yaml").write_text("# @package _global_\n# A fast cell: h = a*h + b. More.\nname: fast\n")
    page = ref.render_configuration(conf)
    assert "| `seed` | int | >= 0 | `7` | the seed |" in page
    assert "| `model.dropout` | float | 0.0 to 1.0 | `0.25` | between layers |" in page
    assert "| `model.encoder` | str | `auto`, `none`, `linear`, `embedding` | `linear` |  |" in page
    assert "| `model.optimizer` | dict or null |  | `{_target_: torch.optim.SGD, lr: 0.1}` | any optimizer |" in page
    assert "| `threads` | int or str or null | `auto` or >= 1 | (not in conf/config.yaml) |  |" in page
    assert "Default: `fast` — which cell." in page
    assert "| `fast` | `conf/cell/fast.yaml` | A fast cell: h = a\\*h + b. |" in page


def test_key_comments_follow_nesting_and_continued_comments():
    text = (
        "a: 1          # first\n"
        "b:\n"
        "  c: 2        # nested\n"
        "  d: x        # long\n"
        "              # and continued\n"
        "  e: \"#x\"     # quoted hash\n"
        "f: 3\n"
    )
    comments = ref.key_comments(text)
    assert comments["a"] == "first"
    assert comments["b.c"] == "nested"
    assert comments["b.d"] == "long and continued"
    assert comments["b.e"] == "quoted hash"
    assert comments["f"] == ""


def test_the_moved_modules_table_has_every_alias():
    table = ref.render_moved_table()
    from seqframe._aliases import MOVED

    for old, new in MOVED.items():
        assert f"| `{old}` | `{new}` |" in table
    assert table in (DOCS / "layout.md").read_text()


def test_the_check_flag_fails_on_stale_pages_and_passes_once_written(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "layout.md").write_text((DOCS / "layout.md").read_text().replace("| `seqframe.errors` |", "| `old` |"))
    assert ref.main(["--docs", str(docs), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert not (docs / "configuration.md").exists()  # --check writes nothing
    assert ref.main(["--docs", str(docs)]) == 0
    assert ref.main(["--docs", str(docs), "--check"]) == 0
    assert (docs / "layout.md").read_text() == (DOCS / "layout.md").read_text()


def test_rest_markup_becomes_markdown_in_the_api_pages():
    text = "Runs :class:`~seqframe.core.cell.Cell` via :func:`seqframe.kernels.run_steps` on ``x``. Example::"
    assert ref.markdown_of_rest(text) == "Runs `Cell` via `seqframe.kernels.run_steps` on `x`. Example:"
    spec = importlib.util.spec_from_file_location("rest_roles", DOCS / "_ext" / "rest_roles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.markdown_of_rest is ref.markdown_of_rest  # the docs build uses this very function


def test_the_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 120, "the README is a newcomer's one or two screens; move details to docs/"
    assert "bash scripts/train.sh" in readme and "bash scripts/test.sh" in readme
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert links
    for link in links:
        if not re.match(r"[a-z]+://", link):
            assert (ROOT / link).is_file(), f"README links to {link}, which does not exist"


@pytest.mark.parametrize(
    "page", sorted(str(p.relative_to(ROOT)) for p in [ROOT / "README.md", *DOCS.rglob("*.md")] if p.name != "layout.md")
)
def test_the_docs_name_modules_where_they_are_now(page):
    from seqframe._aliases import MOVED

    text = (ROOT / page).read_text()
    for old in MOVED:
        old_path = old.replace(".", "/")
        assert not re.search(rf"`{re.escape(old)}[`.]|{re.escape(old_path)}\.py", text), f"{page} names {old}"
