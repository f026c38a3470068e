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
# # 3. Does the first decision use the goal? Activation patching
#
# A probe says what is *decodable*; patching says what is *used*. Take a graph (the **clean**
# run) and the same graph with the goal moved to the end of another arm (the **corrupted** run:
# one prompt token changes, and the right answer is now the other arm). At the position that
# predicts r2 we read the **logit difference**
#
#     LD = logit(clean r2) - logit(corrupted r2)
#
# (the first nodes of the two arms). A model whose r2 depends on the goal has LD > 0 on the clean
# run and LD < 0 on the corrupted one. Then we run the corrupted graph again, with one clean
# activation patched in, and ask how much of the gap it brings back:
#
#     recovered = (LD_patched - LD_corrupted) / (LD_clean - LD_corrupted)
#
# Layer by layer and position by position, the recovery traces the route the goal takes to r2.
#
# **Models**: the shipped reference GPTs (`checkpoints/`), or with `TRAIN = True` small ones trained here.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("WORKBENCH_NOTEBOOK_SMOKE") == "1"  # CI: few graphs (seconds); tiny models if TRAIN
TRAIN = os.environ.get("WORKBENCH_NOTEBOOK_TRAIN") == "1"  # train small models here instead of the shipped ones
STEPS = 20 if SMOKE else 1_000  # steps of a GPT trained here (with TRAIN)
N_GRAPHS = 100 if SMOKE else 1_000  # held-out graphs to patch (results are means over them)

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from workspace import reference_or_train

from workbench.analyses import patching
from workbench.datasets import evaluation_graphs

models = {objective: reference_or_train("gpt", objective, steps=STEPS, train=TRAIN, tiny=SMOKE) for objective in ["next_token", "reverse"]}
data = evaluation_graphs(models["next_token"].config.task, N_GRAPHS)
spec = data.spec
corrupted = patching.goal_moved(data)  # the same graphs, the goal at the end of another arm


def as_text(graphs, i=0):
    edges = "|".join(f"{a},{b}" for a, b in graphs.edges[i].tolist())
    return f"{edges}/{graphs.source[i].item()},{graphs.goal[i].item()}={','.join(map(str, graphs.path[i].tolist()))}"


print("clean:    ", as_text(data))
print("corrupted:", as_text(corrupted))

# %% [markdown]
# ## One patch by hand (`next_token`)
#
# Under `next_token` the model reads its teacher-forced inputs (the prompt, then the answer so
# far) and the slot `r1`, one position after `=`, is where it predicts r2. We cache the clean
# run, run the corrupted one, and then run the corrupted one again with a hook that writes the
# clean residual stream of the last layer at `=` into it.

# %%
checkpoint = models["next_token"]
model, objective = checkpoint.model, checkpoint.objective
predicts_r2 = spec.eq_position + 1
clean_r2, corrupted_r2 = data.path[:, 1], corrupted.path[:, 1]


def teacher_forced(graphs):
    return objective.inputs(graphs.prompt_tokens(), objective.targets(graphs.answer_tokens()), spec)


def logit_difference(logits):
    at = logits[:, predicts_r2]  # (graph, vocab)
    return (at.gather(1, clean_r2[:, None]) - at.gather(1, corrupted_r2[:, None])).mean().item()


with torch.no_grad():
    clean_logits, clean_cache = model.run_with_cache(teacher_forced(data))
    ld_clean, ld_corrupted = logit_difference(clean_logits), logit_difference(model(teacher_forced(corrupted)))

last_layer = f"blocks.{checkpoint.config.model.n_layers - 1}.hook_resid_post"


def patch_eq(activation, hook):
    activation = activation.clone()
    activation[:, spec.eq_position] = clean_cache[last_layer][:, spec.eq_position]
    return activation


with torch.no_grad():
    ld_patched = logit_difference(model.run_with_hooks(teacher_forced(corrupted), fwd_hooks=[(last_layer, patch_eq)]))
print(f"LD clean {ld_clean:.3f}, corrupted {ld_corrupted:.3f}, patched at '=' ({last_layer}) {ld_patched:.3f}")

# %% [markdown]
# What to look for: when LD clean and LD corrupted are nearly equal, r2's logits do not depend on
# where the goal is; there is nothing to recover, and the ratio is 0/0. That is what a model at
# chance on r2 should show.
#
# ## Every layer and position, both models
#
# `patching.goal_patching` does the above for the embedding and every layer, at `=` and at every
# answer slot up to the one that predicts r2 (under `reverse` the answer is fed goal first, so r2
# is predicted from slot r3, after r5, r4, r3 were fed). It leaves `recovered` undefined (NaN)
# when the clean and corrupted LD are closer than 0.1.

# %%
patched = pd.concat([patching.goal_patching(c.model, data, c.objective).assign(objective=name) for name, c in models.items()],
                    ignore_index=True)
patched = patched[(patched["hook"] == "hook_embed") | patched["hook"].str.endswith("hook_resid_post")]
print(patched.groupby("objective")[["ld_clean", "ld_corrupted"]].first().round(3))
for name, frame in patched.groupby("objective", sort=False):
    print(f"\n{name}, share recovered (NaN: undefined, the goal does not move r2):")
    print(frame.pivot_table(index="layer", columns="position", values="recovered", dropna=False, sort=False).round(2))
if not TRAIN:  # next_token's r2 ignores the goal (nothing to recover); reverse reads it at the slot that emits r2
    ends = patched.groupby("objective")[["ld_clean", "ld_corrupted"]].first()
    assert abs(ends.loc["next_token", "ld_clean"] - ends.loc["next_token", "ld_corrupted"]) < 0.1
    assert patched[patched["objective"] == "reverse"]["recovered"].max() > 0.95

# %% [markdown]
# The patched logit difference against the layer patched, one line per position. The green line
# is the clean run's LD, the red one the corrupted run's: a patch that lifts the red level to the
# green one carries all of the goal information r2 uses.
#
# What to look for: under `reverse`, a position whose patch recovers everything (in the main
# job's models, the slot that holds the fed token before r2, whose edge lookup gives r2). Under
# `next_token`, flat lines on a gap of about zero: the first decision ignores the goal.

# %%
grid = sns.relplot(patched, x="layer", y="ld_patched", hue="position", col="objective", kind="line", marker="o",
                   height=3, aspect=1.2, facet_kws={"sharey": False})
for name, ax in grid.axes_dict.items():
    first = patched[patched["objective"] == name].iloc[0]
    ax.axhline(first["ld_clean"], color="green", linestyle="--")
    ax.axhline(first["ld_corrupted"], color="red", linestyle="--")
grid.set_axis_labels("patched layer (0 = embedding)", "r2 logit difference after the patch")
plt.show()

# %% [markdown]
# ## What we have
#
# A model that must plan (`reverse` emits the goal first and then follows edges back) moves the
# goal to its r2 prediction through the tokens it is fed; the `next_token` model's r2 does not
# respond to the goal at all. The last notebook compares the representations the objectives
# build at `=` (`04_comparing_objectives.py`).
