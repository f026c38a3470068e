"""Linear probes: is the target path linearly decodable before the first answer token?

    from workbench.probes import probe_sweep
    table = probe_sweep(["checkpoints/gpt-next_token", "checkpoints/gpt-reverse"])

Modules, in the order data flows: ``activations`` (hooks x positions, cached), ``targets``
(labels from the graph, with control tasks), ``linear`` (the scikit-learn probe), ``sweep``
(every combination, with controls, as one tidy table), ``plots`` (one heatmap per target).
"""

from workbench.probes.activations import collect_activations
from workbench.probes.linear import fit_probe, score_probe
from workbench.probes.plots import plot_probe_heatmaps
from workbench.probes.sweep import probe_checkpoint, probe_sweep
from workbench.probes.targets import probe_targets, target_names

__all__ = ["collect_activations", "fit_probe", "score_probe", "plot_probe_heatmaps", "probe_checkpoint", "probe_sweep", "probe_targets", "target_names"]
