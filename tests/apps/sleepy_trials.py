"""A Hydra app whose job sleeps instead of training: seqframe's Optuna sweeper and Hydra's joblib
launcher, really started, at no cost. Job 0 (trial 0) sleeps ``slow`` seconds, the others ``fast``;
each job returns ``x``. Run: python sleepy_trials.py -m [overrides] (its config is config.yaml beside it)."""

import os
import time

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from seqframe.harness.optional_dependencies import expose_checkout_hydra_plugins


def task(cfg: DictConfig) -> float:
    started = time.time()
    time.sleep(cfg.slow if HydraConfig.get().job.num == 0 else cfg.fast)
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "ran.txt"), "w") as handle:
        handle.write(f"{os.getpid()} {started} {time.time()}\n")  # which process ran it, from when to when
    return float(cfg.x)


if __name__ == "__main__":
    expose_checkout_hydra_plugins()
    hydra.main(version_base="1.3", config_path=".", config_name="config")(task)()
