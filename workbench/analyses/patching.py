"""Where does the goal reach the first decision? Activation patching of the goal.

Clean run: a graph. Corrupted run: the same graph with the goal moved to the end of another
arm (the prompt's goal token changes; the answer is now that arm). Each run gets its
objective's own teacher-forced inputs. We read the *r2 logit difference*,
``logit(clean r2) - logit(corrupted r2)`` (the first nodes of the two arms), at the position
that predicts r2. Then, layer by layer, we run the corrupted graph with the clean run's
activation patched in at one hook and one position (``eq`` and every answer slot up to the
one that predicts r2: ``r1`` under next_token, ``r1``..``r3`` under reverse, whose slots
hold the reversed path) and report

    recovered = (LD_patched - LD_corrupted) / (LD_clean - LD_corrupted)

1 means that activation alone carries the goal information the r2 prediction uses; 0 means
it carries none. When the model does not use the goal at all (LD_clean = LD_corrupted, as for
a model at chance on r2) recovery is undefined; the raw logit differences are kept for that.

Sites: the embedding and every layer's residual stream, and for Mamba every layer's SSM state
h_t (``blocks.{i}.mixer.hook_ssm_state``, all d_inner x d_state numbers at one position). A
state patch flows forward (``ssm_state_patch="propagate"``): the layer's recurrence continues
from the clean h_t, so the states after it, and the outputs read from them, are recomputed.
It asks "does the layer's memory at that position carry the goal to the r2 prediction?",
while the layer's later inputs (x, dt, B, C from the corrupted residual) stay corrupted.
With ``"local"`` only y_t at the patched position sees the clean state: a patch at ``eq``
can then reach the r2 prediction (one position later) only through the later layers.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from torch import Tensor, nn

from workbench.analyses.clever_hans import wrong_arm_path
from workbench.evaluate import model_device
from workbench.objectives import Objective
from workbench.probes.activations import RESIDUAL_HOOKS, expand_hooks, hook_layer, position_index
from workbench.probes.plots import PANELS_PER_ROW, SITE_NAMES, ends_row, panel_axes, row_label
from workbench.probes.sweep import hook_site
from workbench.task import PathStarData


def goal_moved(data: PathStarData) -> PathStarData:
    """The same graphs with the goal at the end of another arm (that arm is the answer)."""
    wrong = wrong_arm_path(data)
    return PathStarData(data.spec, data.edges, data.source, wrong[:, -1].clone(), wrong)


def r2_logit_difference(logits: Tensor, row: int, clean_r2: Tensor, corrupt_r2: Tensor) -> Tensor:
    """(batch,) logit(clean r2) - logit(corrupted r2) at sequence index ``row``."""
    at = logits[:, row]
    return at.gather(1, clean_r2[:, None])[:, 0] - at.gather(1, corrupt_r2[:, None])[:, 0]


def at_position(hook: str, index: int) -> tuple[slice | int, ...]:
    """Index of one sequence position in a hook's activations; the SSM state is (batch, d_inner, pos, d_state)."""
    return (slice(None), slice(None), index) if hook.endswith("hook_ssm_state") else (slice(None), index)


def patch_sites(model: nn.Module) -> list[str]:
    """The residual hooks, plus every layer's SSM state where the model has one (Mamba)."""
    has_state = any(name.endswith("mixer.hook_ssm_state") for name in model.hook_dict)
    return expand_hooks(model, [*RESIDUAL_HOOKS, *(["ssm_state"] if has_state else [])])


@torch.no_grad()
def goal_patching(
    model: nn.Module, data: PathStarData, objective: Objective, positions: tuple[str, ...] | None = None, min_gap: float = 0.1,
    ssm_state_patch: str = "propagate",
) -> pd.DataFrame:
    """Rows (hook, site, layer, position, ld_clean, ld_corrupted, ld_patched, recovered), means over graphs.

    ``recovered`` is left undefined (NaN) when the clean and corrupted logit differences are
    closer than ``min_gap``: then the model's r2 barely depends on the goal. ``ssm_state_patch``
    says what a Mamba state patch reaches (module docstring); the model's own setting is
    restored afterwards.
    """
    if not hasattr(model, "ssm_state_patch"):
        return _goal_patching(model, data, objective, positions, min_gap)
    saved, model.ssm_state_patch = model.ssm_state_patch, ssm_state_patch
    try:
        return _goal_patching(model, data, objective, positions, min_gap)
    finally:
        model.ssm_state_patch = saved


def _goal_patching(model: nn.Module, data: PathStarData, objective: Objective, positions: tuple[str, ...] | None, min_gap: float) -> pd.DataFrame:
    """``goal_patching`` with the model's state-patch mode as it is."""
    spec = data.spec
    corrupt = goal_moved(data)
    row = spec.eq_position + objective.emitted_positions(spec.path_length).index("r2")  # the position that predicts r2
    slots = objective.slot_count(spec.path_length)
    causal = objective.attention == "causal"
    last = row - spec.eq_position if causal else slots  # a bidirectional model reads every slot
    if positions is None:  # '=' and every answer slot up to that position
        positions = ("eq", *(f"r{k}" for k in range(1, last + 1)))
    device = model_device(model)

    def inputs(graphs: PathStarData) -> Tensor:
        return objective.inputs(graphs.prompt_tokens(), objective.targets(graphs.answer_tokens()), spec).to(device)

    clean_inputs, corrupt_inputs = inputs(data), inputs(corrupt)
    clean_r2, corrupt_r2 = data.path[:, 1].to(device), corrupt.path[:, 1].to(device)
    hooks = patch_sites(model)
    # In a causal model, positions after the r2 prediction cannot influence it.
    indices = {position: index for position in positions if (index := position_index(position, data, slots)) <= row or not causal}

    # Keep only the patched positions of the clean run: a Mamba layer's whole SSM state is
    # (batch, d_inner, pos, d_state), about 0.5 GB per layer on 2,000 graphs of G(2,5,50).
    clean_cache: dict[tuple[str, int], Tensor] = {}

    def keep(acts: Tensor, hook, name: str) -> None:
        for index in indices.values():
            clean_cache[name, index] = acts[at_position(name, index)].clone()

    clean_logits = model.run_with_hooks(clean_inputs, fwd_hooks=[(hook, partial(keep, name=hook)) for hook in hooks])
    ld_clean = r2_logit_difference(clean_logits, row, clean_r2, corrupt_r2).mean().item()
    ld_corrupt = r2_logit_difference(model(corrupt_inputs), row, clean_r2, corrupt_r2).mean().item()

    def patch(acts: Tensor, hook, name: str, index: int) -> Tensor:
        acts = acts.clone()
        acts[at_position(name, index)] = clean_cache[name, index]
        return acts

    rows = []
    for position, index in indices.items():
        for hook in hooks:
            logits = model.run_with_hooks(corrupt_inputs, fwd_hooks=[(hook, partial(patch, name=hook, index=index))])
            ld = r2_logit_difference(logits, row, clean_r2, corrupt_r2).mean().item()
            gap = ld_clean - ld_corrupt
            rows.append({
                "hook": hook, "site": hook_site(hook), "layer": hook_layer(hook), "position": position, "ld_clean": ld_clean, "ld_corrupted": ld_corrupt,
                "ld_patched": ld, "recovered": (ld - ld_corrupt) / gap if abs(gap) > min_gap else float("nan"),
            })
    return pd.DataFrame(rows)


def residual_layer(hook: str) -> int | None:
    """The residual stream's layer (``hook_layer``: 0 for the embedding, i+1 after block i);
    None for other hooks (the SSM state)."""
    return hook_layer(hook) if hook == "hook_embed" or re.fullmatch(r"blocks\.\d+\.hook_resid_post", hook) else None


def without_final_residual(frame: pd.DataFrame, by: str | list[str] | None = "run") -> pd.DataFrame:
    """Every row but those of the residual stream after each run's last block (runs told apart
    by the ``by`` columns; None: the frame is one run). Patched there, the slot that emits r2
    hands back r2's logits (all of the logit difference, by construction) and any earlier slot
    reaches no later one (none of it): neither says where the decision is made."""
    layers = frame["hook"].map(residual_layer)
    last = layers.max() if by is None else layers.groupby([frame[c] for c in ([by] if isinstance(by, str) else by)]).transform("max")
    return frame[~(layers.notna() & (layers == last))]


def best_site(patching: pd.DataFrame) -> pd.Series | None:
    """One run's patching row (``goal_patching``'s columns) whose clean activation restores most
    of r2's logit difference, leaving out the residual after the last block
    (``without_final_residual``); None where moving the goal does not change r2."""
    candidates = without_final_residual(patching, by=None)
    return candidates.loc[candidates["recovered"].idxmax()] if candidates["recovered"].notna().any() else None


def row_order(frame: pd.DataFrame) -> list[str]:
    """The sites' row labels (as the probe heatmaps'), deepest first: depth order reversed, so a
    layer's residual sits above the SSM state it is computed from."""
    rank = {site: r for r, site in enumerate(SITE_NAMES)}
    depth = {row_label(hook_site(h), layer): (layer, rank.get(hook_site(h), len(rank))) for h, layer in zip(frame["hook"], frame["layer"])}
    return sorted(depth, key=depth.__getitem__, reverse=True)


def plot_patching(frame: pd.DataFrame, path: str | Path) -> Path:
    """Recovered share of the r2 logit difference, site x position, one panel per checkpoint."""
    frame = frame.assign(row=[row_label(hook_site(h), layer) for h, layer in zip(frame["hook"], frame["layer"])])
    order = row_order(frame)
    panels = frame.groupby(["arch", "objective"], sort=False)
    widest = frame.groupby(["arch", "objective"])["position"].nunique().max()
    fig, axes = panel_axes(len(panels), 0.7 * widest + 2.0, 0.5 * len(order) + 1.8, 2.2, 0.8)
    for index, (ax, ((arch, objective), panel)) in enumerate(zip(axes, panels)):
        grid = panel.pivot_table(index="row", columns="position", values="recovered", dropna=False, sort=False)
        grid = grid.reindex(index=[r for r in order if r in grid.index])
        sns.heatmap(grid, vmin=0, vmax=1, cmap="coolwarm", annot=True, fmt=".2f", ax=ax, cbar=ends_row(index, len(panels)), cbar_kws={"label": "share of r2 logit difference recovered"})
        first = panel.iloc[0]
        ax.set_title(f"{arch} / {objective}\nLD clean {first['ld_clean']:.2f}, corrupted {first['ld_corrupted']:.2f}", fontsize=9)
        ax.set_xlabel("patched position")
        ax.set_ylabel("patched activation" if index % PANELS_PER_ROW == 0 else "")
        ax.tick_params(axis="y", rotation=0)
    fig.suptitle("Goal patching: clean activations patched into a run whose goal was moved to another arm\n(an SSM state patch flows forward through its layer's recurrence)\n(blank: the model's r2 does not depend on the goal, nothing to recover)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
