"""The run directory: the names of what a run writes, and the summary that sweeps, reports and users read.

Nothing here imports Lightning or Hydra, so reading runs back stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

SUMMARY_FILE = "summary.json"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
ELAPSED = "time/elapsed_s"  # wall seconds since fitting started, logged with each validation
CPU = "time/cpu_s"  # the run's CPU seconds since fitting started, logged with it


def read_summary(run_dir: Path) -> Optional[Dict[str, Any]]:
    """A run's summary.json, or None when there is none (yet) or it cannot be read."""
    try:
        return json.loads((Path(run_dir) / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
