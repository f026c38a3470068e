"""Analyses of trained checkpoints, one module per question, each returning a tidy DataFrame
and drawing its figure: ``clever_hans`` (the cheat), ``supervision`` (what reaches r2),
``cka`` (representations across objectives), ``patching`` (where the goal reaches r2),
``probes_over_training``; ``run`` runs them all, ``report`` gathers the results in a page."""
