"""Running the graph: model and device checks, validation before the graph, the local run, plugin files,
the SLURM client and array mode, the group level. Imported only by ``cli``."""
