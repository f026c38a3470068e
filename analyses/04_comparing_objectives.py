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
# # 4. Do different objectives build different representations?
#
# `next_token` and `reverse` see the same prompts and differ only in what they are asked to
# emit after `=`. Do they read the prompt into the same representation at `=`, where no answer
# token has been fed yet? Does a Mamba build what a GPT builds?
#
# **Linear CKA** (Kornblith et al., 2019) compares two representations X (n x p) and Y (n x q)
# of the same n inputs: with columns centred, CKA = |YᵀX|²_F / (|XᵀX|_F |YᵀY|_F). It is 1 when
# the two are the same up to a rotation and a uniform scale, whatever their widths, so it
# compares layers of different models and architectures.
#
# A CKA number needs a reference level: two runs of the **same** recipe with different seeds.
# Pairs across objectives or architectures are read against it.
#
# **Models**: the shipped reference checkpoints (`checkpoints/`: the main job's models on
# G(2,5,50), a second GPT seed among them); with `TRAIN = True` models trained here on the main
# job's schedule (about five minutes the first time, then reused from `runs/notebooks`).

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("WORKBENCH_NOTEBOOK_SMOKE") == "1"  # CI: few graphs (seconds); tiny models if TRAIN
TRAIN = os.environ.get("WORKBENCH_NOTEBOOK_TRAIN") == "1"  # train small models here instead of the shipped ones
STEPS = {"gpt": 20, "mamba": 10} if SMOKE else {"gpt": 1_000, "mamba": 1_000}  # of models trained here (with TRAIN)
N_GRAPHS = 200 if SMOKE else 2_000  # prompts every model reads
RUNS = [("gpt", "next_token", 0), ("gpt", "next_token", 1), ("gpt", "reverse", 0), ("mamba", "next_token", 0)]  # (arch, objective, seed)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from workspace import reference_or_train

from workbench.analyses import cka
from workbench.datasets import evaluation_graphs

models = {f"{arch}/{objective}/s{seed}": reference_or_train(arch, objective, steps=STEPS[arch], seed=seed, train=TRAIN, tiny=SMOKE)
          for arch, objective, seed in RUNS}
data = evaluation_graphs(models["gpt/next_token/s0"].config.task, N_GRAPHS)

# %% [markdown]
# ## CKA by hand
#
# The last layer's residual stream at `=` of two models, on the same prompts, and the formula
# above in two lines of numpy; `cka.linear_cka` is the library's version of the same.

# %%
def last_layer_at_eq(checkpoint):
    hook = f"blocks.{checkpoint.config.model.n_layers - 1}.hook_resid_post"
    _, cache = checkpoint.model.run_with_cache(data.prompt_tokens(), names_filter=lambda name: name == hook)
    return cache[hook][:, data.spec.eq_position].detach().double().numpy()


def linear_cka(x, y):
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


x, y = last_layer_at_eq(models["gpt/next_token/s0"]), last_layer_at_eq(models["gpt/reverse/s0"])
print(f"gpt next_token vs reverse, last layer at '=': by hand {linear_cka(x, y):.4f}, library {cka.linear_cka(x, y):.4f}")
assert abs(linear_cka(x, y) - cka.linear_cka(x, y)) < 1e-6 and 0 <= linear_cka(x, y) <= 1  # the formula and the library agree

# %% [markdown]
# ## Every pair of layers, for pairs of models
#
# `cka.layer_cka(a, b, data)` gives CKA for every (layer of a, layer of b) at `=`. The pairs:
# two seeds of the same recipe (the reference level), across objectives within an architecture,
# and across architectures within an objective. The embedding of `=` is the same vector for
# every prompt, so its CKA is undefined (blank).
#
# What to look for: the diagonal of the seed pair is the "as similar as two runs can be" level.
# A pair across objectives well below it means the objective changes what is computed at `=`
# before any answer token is seen.

# %%
pairs = {  # add runs to RUNS and pairs here (e.g. mamba/reverse: shipped too)
    "across seeds": ("gpt/next_token/s0", "gpt/next_token/s1"),
    "across objectives": ("gpt/next_token/s0", "gpt/reverse/s0"),
    "across archs": ("gpt/next_token/s0", "mamba/next_token/s0"),
}
frames = [cka.layer_cka(models[a], models[b], data).assign(kind=kind, pair=f"{a} vs {b}") for kind, (a, b) in pairs.items()]
table = pd.concat(frames, ignore_index=True)

fig, axes = plt.subplots(1, len(pairs), figsize=(3.4 * len(pairs), 3.2))
for ax, (kind, (a, b)) in zip(axes, pairs.items()):
    grid = table[table["kind"] == kind].pivot_table(index="layer_a", columns="layer_b", values="cka", dropna=False)
    sns.heatmap(grid.sort_index(ascending=False), vmin=0, vmax=1, annot=True, fmt=".2f", cmap="viridis", cbar=False, ax=ax)
    ax.set_title(f"{kind}\n{a} vs {b}", fontsize=9)
    ax.set_xlabel(f"layer of {b}", fontsize=8)
    ax.set_ylabel(f"layer of {a}", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Same depth, every pair
#
# One number per pair: CKA between the two models' **last** layers, against the seed pair's.

# %%
last = table[(table["layer_a"] == table.groupby("pair")["layer_a"].transform("max"))
             & (table["layer_b"] == table.groupby("pair")["layer_b"].transform("max"))]
print(last[["kind", "pair", "cka"]].round(3).to_string(index=False))
ax = sns.barplot(last, y="kind", x="cka", color="steelblue")
ax.axvline(last.loc[last["kind"] == "across seeds", "cka"].iloc[0], color="grey", linestyle="--", label="two seeds (reference)")
ax.set_xlim(0, 1)
ax.set_xlabel("linear CKA, last layer at '='")
ax.set_ylabel("")
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# ## What we have
#
# Read each pair against the seed pair: a model pair closer than two seeds of one recipe shares
# its representation at `=`; one far below it has learned something else from the same prompts.
# The main job's report shows these for every objective and both architectures
# (`workbench main`, then `runs/default/report.html`).
