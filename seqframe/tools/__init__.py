"""The ``seqframe`` command and what it runs: bench, report and plots, the cell scaffold."""
