# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. The failure: where does next-token prediction go wrong?
#
# A path-star graph G(d, l): a source with d arms of l nodes (source included). The prompt lists
# the edges in random order, then the source and the goal; the answer is the arm from the source
# to the goal. The answer's first token r1 is the source (copied from the prompt); its second,
# r2, is the **first decision**: the only token that needs the model to plan from the goal back.
#
# Bachmann & Nagarajan (2024) report that a model trained by next-token prediction (teacher
# forcing) fits every answer token except r2, which stays at chance, 1/d. This notebook checks
# that on our models and asks why:
#
# 1. Which answer positions does a `next_token` model get right, with and without teacher forcing?
# 2. How did it get there along training?
# 3. Is it cheating on the later tokens, following the edge out of whatever token it was given?
#
# **Models.** The reference checkpoints shipped in `checkpoints/` (the main job's GPTs on
# G(2,5,50), `checkpoints/manifest.csv`), loaded by `reference_or_train`; with `TRAIN = True`
# small GPTs trained here instead (1,000 steps of the `cpu` preset, about a minute and a half
# each on two cores, kept in `runs/notebooks` and reused by the later notebooks). Beside
# `next_token`, `reverse` (the answer emitted goal first), the paper's remedy, as the contrast.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("WORKBENCH_NOTEBOOK_SMOKE") == "1"  # CI: few graphs (seconds); tiny models if TRAIN
TRAIN = os.environ.get("WORKBENCH_NOTEBOOK_TRAIN") == "1"  # train small models here instead of the shipped ones
STEPS = 20 if SMOKE else 1_000  # steps of a GPT trained here (with TRAIN)
N_GRAPHS = 200 if SMOKE else 2_000  # held-out graphs to evaluate on

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from workspace import reference_or_train

from workbench.analyses import clever_hans
from workbench.evaluate import evaluate, metrics_frame
from workbench.datasets import evaluation_graphs

models = {objective: reference_or_train("gpt", objective, steps=STEPS, train=TRAIN, tiny=SMOKE) for objective in ["next_token", "reverse"]}
data = evaluation_graphs(models["next_token"].config.task, N_GRAPHS)  # never trained on
spec = data.spec
chance = 1 / spec.degree

# %% [markdown]
# One held-out graph in the paper's text format (`edges/source,goal=path`):

# %%
edges = "|".join(f"{a},{b}" for a, b in data.edges[0].tolist())
print(f"{edges}/{data.source[0].item()},{data.goal[0].item()}={','.join(map(str, data.path[0].tolist()))}")

# %% [markdown]
# ## Which positions does the model get right?
#
# `evaluate` scores every answer position two ways: **teacher-forced** (the model is given the
# true answer so far, as in training) and **greedy** (it feeds itself its own previous outputs,
# as at test time). `path` is the whole answer right.
#
# What to look for: under `next_token`, r1 and r3..rl near 1 with teacher forcing while r2 sits
# near 1/d (the dashed line); greedy, every token after a wrong r2 is wrong too, so the greedy
# path is no better than r2. Under `reverse` every position is fitted. (If every position is
# still near 0.2, the model is on the plateau that precedes the fit: raise `STEPS`.)

# %%
results = pd.concat([evaluate(c.model, data, c.objective).assign(objective=name) for name, c in models.items()], ignore_index=True)
print(results.pivot_table(index=["objective", "metric"], columns="position", values="value", sort=False).round(3))
value = results.set_index(["objective", "metric", "position"])["value"]
if not TRAIN:  # the shipped models show the paper's signature (docs/findings.md); a notebook that stops showing it fails
    assert abs(value["next_token", "tf_accuracy", "r2"] - chance) < 0.1, "next_token's first decision should sit at chance"
    assert min(value["next_token", "tf_accuracy", f"r{k}"] for k in range(3, spec.path_length + 1)) > 0.95, "the later tokens are fitted"
    assert value["reverse", "greedy_accuracy", "path"] > 0.95, "reversed answers solve the task"

accuracy = results[results["metric"].isin(["tf_accuracy", "greedy_accuracy"])]
grid = sns.catplot(accuracy, x="position", y="value", hue="metric", col="objective", kind="bar", height=3, aspect=1.3)
grid.refline(y=chance, linestyle="--", color="grey")
grid.set_axis_labels("answer position (path: all of it)", "held-out accuracy")
plt.show()

# %% [markdown]
# ## How did it get there?
#
# Each checkpoint keeps its evaluations along training (`checkpoint.metrics`; `metrics_frame`
# makes them a tidy table). What to look for: a plateau, then r1 and the later tokens jump
# together while r2 stays at 1/d for the rest of training under `next_token`.

# %%
curves = pd.concat([metrics_frame(c.metrics).assign(objective=name) for name, c in models.items()], ignore_index=True)
curves = curves[(curves["split"] == "test") & (curves["metric"] == "tf_accuracy") & (curves["position"] != "path")]
grid = sns.relplot(curves, x="step", y="value", hue="position", col="objective", kind="line", marker="o", height=3, aspect=1.3)
grid.refline(y=chance, linestyle="--", color="grey")
grid.set_axis_labels("training step", "teacher-forced accuracy")
plt.show()

# %% [markdown]
# ## The cheat test
#
# If the later tokens are learned by the *Clever Hans* cheat (find the edge out of the previous
# answer token and emit its target), they need no plan at all. Test it: keep the prompt (goal
# included) and feed a **wrong arm** as the answer so far. Does the model **follow** the wrong
# arm, or **return** to the goal arm?
#
# What to look for: a `next_token` model that follows the fed arm (near 100%) is reading the
# previous token, not the goal. Under `reverse` the answer is fed goal first, and following the
# fed token back towards the source is the correct algorithm, not a cheat.

# %%
cheat = pd.concat([clever_hans.cheat_test(c.model, data, c.objective).assign(objective=name) for name, c in models.items()],
                  ignore_index=True)
print(cheat.pivot_table(index=["objective", "position"], columns="outcome", values="rate", sort=False).round(3))
if not TRAIN:  # next_token follows the fed arm at every later decision
    follow = cheat[(cheat["objective"] == "next_token") & (cheat["outcome"] == "follow") & cheat["position"].isin(["r3", "r4"])]
    assert len(follow) == 2 and (follow["rate"] > 0.95).all(), follow
grid = sns.catplot(cheat, x="position", y="rate", hue="outcome", col="objective", kind="bar", height=3, aspect=1.3)
grid.set_axis_labels("answer position predicted", "share of predictions")
plt.show()

# %% [markdown]
# ## Where the cheat happens: attention onto the looked-up edge
#
# For each head, the attention from the position that predicts r3..rl onto the edge between the
# previous answer token and the next (its two nodes and the separator after it). Uniform
# attention would put about 3/30 there. What to look for: heads that concentrate on that edge
# are doing the lookup.

# %%
fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3))
for ax, (name, c) in zip(axes, models.items()):
    lookup = clever_hans.edge_lookup_attention(c.model, data[:500], c.objective)
    later = lookup[~lookup["position"].isin(["r1", "r2"])]
    mass = later.groupby(["layer", "head", "position"])["mass"].sum().groupby(["layer", "head"]).mean().unstack("head")
    sns.heatmap(mass, vmin=0, vmax=1, annot=True, fmt=".2f", cmap="magma", ax=ax)
    ax.set_title(f"gpt / {name}: attention on the edge")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What we have
#
# The `next_token` model is right wherever the previous token gives the answer away, and at
# chance at the one position where it does not. The next notebook asks whether the goal arm is
# nonetheless *present* in its activations before r2 is emitted (`02_what_is_decodable.py`).
