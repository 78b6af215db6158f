"""What a training job prints: its config as a short tree, and no third-party notice that does not apply.

The full composed config is in the run dir's ``.hydra/config.yaml``; the tree
shows what a reader checks at a glance: one branch per section, labelled
with the config file Hydra chose for it, its settings on one wrapped line,
unset (null) values left out. :func:`quiet_third_party` drops Lightning's
advertising tips and the warnings that cannot apply to a seqframe run, each
matched by its own message where it is raised.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from omegaconf import DictConfig, OmegaConf

from seqframe.harness.rundir import RunDir

OUTPUTS = "<outputs>"  # the run dir, in the paths below it; shown once, on the tree's last line


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if value != "" else "''"


def _settings(node: Mapping[str, Any]) -> str:
    """``key=value`` for a node's plain settings: nulls, ``_target_`` and nested nodes left out."""
    return " ".join(
        f"{k}={_shown(v)}" for k, v in node.items() if v is not None and k != "_target_" and not isinstance(v, Mapping)
    )


def _add_branch(parent: Any, name: str, node: Mapping[str, Any], choice: Optional[str]) -> None:
    from rich.text import Text

    target = str(node.get("_target_", "")).rsplit(".", 1)[-1]
    label = Text(name, style="bold")
    if choice:
        label.append(": ").append(choice, style="cyan")
    elif target:
        label.append(f" ({target})")
    if _settings(node):
        label.append("  " + _settings(node))
    branch = parent.add(label)
    for key, child in node.items():
        if isinstance(child, Mapping):
            _add_branch(branch, key, child, None)


def _plain(cfg: DictConfig) -> Dict[str, Any]:
    """The config as plain containers, resolved where it can be (a bad interpolation is reported later)."""
    shown = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))  # a copy, never read-only
    if OmegaConf.select(shown, "paths.output_dir", default=None) is not None:
        shown.paths.output_dir = OUTPUTS
    try:
        return OmegaConf.to_container(shown, resolve=True)
    except Exception:  # noqa: BLE001 - display only: check_config reports the bad key with its message
        return OmegaConf.to_container(shown, resolve=False)


def config_tree(cfg: DictConfig, choices: Optional[Mapping[str, Any]] = None) -> Any:
    """``cfg`` as a ``rich`` tree: the top-level settings, then one branch per section.

    ``choices`` maps Hydra's config groups to the file chosen (``{"cell": "gru", ...}``);
    a group that is no section of the config (``hardware``, ``precision``) is shown on the root.
    """
    from rich.text import Text
    from rich.tree import Tree

    values = _plain(cfg)
    values.pop("paths", None)
    output_dir = OmegaConf.select(cfg, "paths.output_dir", default=None, throw_on_resolution_failure=False)
    choices = {k: v for k, v in (choices or {}).items() if v is not None and not k.startswith("hydra/")}
    root = Text("config", style="bold")
    for group, choice in choices.items():
        if not isinstance(values.get(group), Mapping):
            root.append(f" {group}=").append(str(choice), style="cyan")
    tree = Tree(root, guide_style="dim")
    tree.add(Text(_settings(values)))
    for name, node in values.items():
        if isinstance(node, Mapping):
            _add_branch(tree, name, node, choices.get(name))
    if output_dir:
        tree.add(Text.assemble((OUTPUTS, "bold"), f" = {output_dir}"))
    return tree


def print_config(cfg: DictConfig) -> None:
    """Print ``cfg`` as a tree on stdout (in colour on a terminal only)."""
    from hydra.core.hydra_config import HydraConfig
    from rich.console import Console

    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    Console(highlight=False).print(config_tree(cfg, choices))


class _DropTips(logging.Filter):
    """Lightning's "💡 Tip: try installing litlogger/litmodels" lines: printed on every run that does not
    use Lightning's cloud services, with no setting to turn them off."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


_DROP_TIPS = _DropTips()


def quiet_third_party(run_dir: Path, resuming: bool = False) -> None:
    """Filter, each at its source, the notices a seqframe run would print that do not apply to it.

    ``resuming``: the run goes on from a checkpoint (``ckpt_path``), so its run dir already holds
    its own checkpoints. Idempotent: a sweep calls it once per job in the same process.
    """
    tips = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if _DROP_TIPS not in tips.filters:
        tips.addFilter(_DROP_TIPS)
    # seqframe's data modules hold their tensors in memory: a batch is a slice, and loader worker
    # processes would only add copying (data.num_workers stays the user's to raise).
    warnings.filterwarnings(
        "ignore",
        message=r"The '\w+' does not have many workers",
        module=r"pytorch_lightning\.trainer\.connectors\.data_connector",
    )
    # Lightning (up to 2.6 at least) builds torch's LeafSpec, which torch 2.10 deprecated; nothing the
    # project calls can avoid it (every Trainer loop flattens its loaders through it).
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"pytorch_lightning\.utilities\._pytree",
    )
    if resuming:  # ModelCheckpoint's notice that the run's own checkpoint dir holds files
        warnings.filterwarnings(
            "ignore",
            message=rf"Checkpoint directory {re.escape(str(RunDir(run_dir).checkpoints))} exists and is not empty",
            module=r"pytorch_lightning\.callbacks\.model_checkpoint",
        )
    if not RunDir(run_dir).metrics_file.exists():
        # The CSV logger warns about any file in its directory, and Hydra has already written .hydra/
        # and app.log into the run dir; only an existing metrics.csv would be lost (resuming keeps it:
        # seqframe.harness.csv_log), so the warning is silenced for this run dir while it has none.
        warnings.filterwarnings(
            "ignore",
            message=rf"Experiment logs directory {re.escape(str(run_dir))}/? exists and is not empty",
            module=r"lightning_fabric\.loggers\.csv_logs",
        )
