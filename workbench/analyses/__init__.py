"""Analyses of trained checkpoints, one module per question, each returning a tidy DataFrame
and drawing its figure: ``clever_hans`` (the cheat), ``supervision`` (what reaches r2),
``cka`` (representations across objectives), ``patching`` (where the goal reaches r2),
``inspect`` (those that need no training history, on any checkpoints); ``run`` runs them all,
with the probes along training (``workbench.probes.over_training``), and ``report`` gathers
the results in a page."""
