"""The core: what a recurrent model is, with no training framework around it.

The :class:`~seqframe.core.cell.Cell` contract, the built-in cells, the
registry that finds cells through pluggy entry points, cell options, and
:class:`~seqframe.core.recurrent.Recurrent`, which runs any cell over
batches of sequences. Nothing here imports Lightning or Hydra (a test
reads the imports), so a library user of ``seqframe.Recurrent`` pays for
torch alone.
"""
