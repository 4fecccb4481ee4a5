"""The experiment grid: the (target, row, seed) plan with its selections and stages (``plan``), the job processes on
this machine (``workers``: devices, threads, batches, Ctrl-C) and where jobs run (``backends``: local, Ray, SLURM).
``workers`` needs nothing from the package."""
