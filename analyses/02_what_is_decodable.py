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
# # 2. What is decodable before the first decision?
#
# The `next_token` model emits r2 at chance (`01_the_failure.py`). Two explanations: the model
# never works out which arm leads to the goal, or it does and fails to use it. A **linear probe**
# asks which: read the activations at `=` (the position whose output is r1, before any answer
# token) and try to predict the **goal arm** from them with a logistic regression. If the probe
# beats chance on graphs it never saw, the information is there, linearly.
#
# Steps: cache activations at `=` with `run_with_cache`; fit a probe by hand with scikit-learn;
# then the same with `workbench.probes`, which adds the controls that make a probe result
# believable (an untrained model, a control task, the embedding layer).
#
# **Models**: as in notebook 1, the shipped reference GPTs (`checkpoints/`), or with `TRAIN = True`
# small ones trained here (reused from `runs/notebooks` if notebook 1 trained them).

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("WORKBENCH_NOTEBOOK_SMOKE") == "1"  # CI: few graphs (seconds); tiny models if TRAIN
TRAIN = os.environ.get("WORKBENCH_NOTEBOOK_TRAIN") == "1"  # train small models here instead of the shipped ones
STEPS = 20 if SMOKE else 1_000  # steps of a GPT trained here (with TRAIN)
N_TRAIN, N_TEST = (600, 400) if SMOKE else (2_000, 1_000)  # graphs to fit each probe on / to score it on
CS = (1.0,) if SMOKE else (0.1, 1.0, 10.0)  # probe regularisation; with several, 3-fold CV picks one
JOBS = 1 if SMOKE else -1  # worker processes fitting probes in workbench.probes (-1: one per core)

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from workspace import reference_or_train

from workbench.probes import probe_sweep
from workbench.datasets import evaluation_graphs

models = {objective: reference_or_train("gpt", objective, steps=STEPS, train=TRAIN, tiny=SMOKE) for objective in ["next_token", "reverse"]}
data = evaluation_graphs(models["next_token"].config.task, N_TRAIN + N_TEST)  # graphs no model was trained on
spec = data.spec

# %% [markdown]
# ## Activations at `=`
#
# The prompt ends with `=`, and a causal model's activations there depend on the prompt alone,
# so we can run the prompts without any answer tokens. `run_with_cache` returns every hook's
# activations; we keep the residual stream after each layer, at the `=` position.

# %%
eq = spec.eq_position
activations = {}
for name, checkpoint in models.items():
    _, cache = checkpoint.model.run_with_cache(data.prompt_tokens(), names_filter=lambda hook: hook.endswith("hook_resid_post"))
    for layer, hook in enumerate(sorted(cache.keys()), start=1):
        activations[name, layer] = cache[hook][:, eq].float().numpy()  # (graph, d_model)
print({key: value.shape for key, value in activations.items()})

# %% [markdown]
# ## The labels
#
# The **goal arm**, named without node labels (a node name would let a probe read identities):
# the rank, in prompt order, of the source's edge that starts the path to the goal. With d = 2
# arms it is 0 or 1, chance 1/2. Beside it the **goal node** itself (one of N labels): it is in
# the prompt, one token before `=`, so a model that needs it has every reason to carry it there.

# %%
from_source = data.edges[:, :, 0] == data.source[:, None]  # (graph, edge slot): an edge out of the source
starts_path = data.edges[:, :, 1] == data.path[:, 1:2]  # ... whose target is r2
goal_arm = (from_source.cumsum(dim=1) - 1)[from_source & starts_path]  # its rank among the source's edges
labels = {"goal arm": goal_arm.numpy(), "goal node": data.goal.numpy()}
print("goal arm counts:", torch.bincount(goal_arm).tolist())

# %% [markdown]
# ## A probe by hand
#
# Standardise the features, fit a logistic regression on the first `N_TRAIN` graphs, score it on
# the other `N_TEST`. Train and test never share a graph.
#
# What to look for: the goal arm at chance (1/2) in every layer means no linear read-out of the
# plan exists at `=`. The goal node is a sanity check that the probe can find what is there.

# %%
def probe_accuracy(features, labels):
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2_000))
    probe.fit(features[:N_TRAIN], labels[:N_TRAIN])
    return probe.score(features[N_TRAIN:], labels[N_TRAIN:])


rows = [
    {"objective": name, "layer": layer, "target": target, "accuracy": probe_accuracy(features, labels[target])}
    for (name, layer), features in activations.items()
    for target in labels
]
by_hand = pd.DataFrame(rows)
print(by_hand.pivot_table(index=["objective", "target"], columns="layer", values="accuracy").round(3))

grid = sns.catplot(by_hand, x="layer", y="accuracy", hue="objective", col="target", kind="bar", height=3, aspect=1.2)
for ax, chance in zip(grid.axes.flat, [1 / spec.degree, 1 / spec.num_nodes]):
    ax.axhline(chance, linestyle="--", color="grey")
grid.set_axis_labels("residual stream after layer", "held-out probe accuracy at '='")
plt.show()

# %% [markdown]
# ## The same with `workbench.probes`, and its controls
#
# A probe number means little alone. `probe_sweep` fits the same kind of probe (its C chosen by
# cross-validation from `CS`) for every hook, position and target, and beside each one:
#
# - `random_init_accuracy`: the same probe on the **untrained** model (same architecture and
#   seed). A number the untrained model also reaches was not learned.
# - `control_accuracy`: a **control task** (Hewitt & Liang): labels that are a fixed random
#   function of a node name. `selectivity = accuracy - control_accuracy`; a probe with low
#   selectivity is reading node identities, not the property.
# - the **embedding** layer: what the input token alone gives.
#
# Positions: `eq`, and `r1`, the slot fed the first answer token (under `next_token` the source,
# where the model must output r2). Targets: the goal arm, r2's node, and the goal node.

# %%
table = probe_sweep(
    list(models.values()), hooks=["embed", "resid_post"], positions=["eq", "r1"], targets=["arm", "node_r2", "goal"],
    n_train=N_TRAIN, n_test=N_TEST, Cs=CS, n_jobs=JOBS, progress=not SMOKE,
)
columns = ["objective", "target", "position", "site", "layer", "accuracy", "random_init_accuracy", "control_accuracy", "selectivity",
           "chance"]
print(table[columns].round(3).to_string(index=False))
if not TRAIN:  # what docs/findings.md reports: the goal arm nowhere (chance 0.5), the goal node at '=' in reverse (the positive control)
    arm = table[table["target"] == "arm"]
    assert (arm["accuracy"] - arm["random_init_accuracy"]).max() < 0.1, "no probe finds the goal arm beyond the untrained model"
    goal = table[(table["target"] == "goal") & (table["position"] == "eq")].groupby("objective")["accuracy"].max()
    assert goal["reverse"] > 0.95 and goal["next_token"] < 0.3, goal

# %% [markdown]
# What to look for: the goal arm (`arm`) near its chance line at both positions in every layer,
# for the trained and the untrained model alike; and where the goal node is decodable, whether
# the untrained model reaches it too. Mind what each slot is fed: under `reverse` the slot `r1`
# holds the goal itself (the reversed answer starts with it), so the goal read there is the input,
# as the embedding row shows.

# %%
long = table.melt(
    id_vars=["objective", "target", "position", "site", "layer", "chance"],
    value_vars=["accuracy", "random_init_accuracy", "control_accuracy"], var_name="probe on", value_name="held-out accuracy",
)
long["probe on"] = long["probe on"].map(
    {"accuracy": "trained model", "random_init_accuracy": "untrained model", "control_accuracy": "control task"}
)
long["activation"] = ["emb" if site == "embed" else f"L{layer}" for site, layer in zip(long["site"], long["layer"])]
long["where"] = long["position"] + "\n" + long["activation"]
grid = sns.catplot(long, x="where", y="held-out accuracy", hue="probe on", row="objective", col="target", kind="bar",
                   height=2.4, aspect=1.5)
for (objective, target), ax in grid.axes_dict.items():
    ax.axhline(table.loc[table["target"] == target, "chance"].iloc[0], linestyle="--", color="grey")
grid.set_axis_labels("position, activation (emb = embedding, L = residual after layer)", "held-out accuracy")
plt.show()

# %% [markdown]
# ## What we have
#
# If no layer holds the goal arm linearly, the model has not computed the plan where a linear
# read-out could find it before r2. The next notebook asks a causal question instead of a
# decoding one: does the first decision *use* the goal at all (`03_patching.py`)? The same
# sweep on the main job's eight models, with the SSM states of the Mambas, is one command:
# `workbench probe --spec probes/goal_arm.toml`.
