"""The training app: everything between a composed config and a finished run directory.

The LightningModule, metrics, callbacks, checkpoints and exact resume, the
run directory and its summary, config checking, and launching (DDP,
torchrun, submitit, sweeps). It imports core and data, never runs or tools.
"""
