"""The generated blocks of the docs: each a function of the committed results folder.

    results/{job}/{table}.csv         a job's tidy tables (``workbench.publish``)
    results/{job}/provenance.json     what produced them

A block returns Markdown: a table, a sentence of provenance, or one number for a sentence.
Blocks read the tables as the job wrote them and reduce them here, in the open, so a reader
can see how each published number comes from the rows (the reductions are the ones the
report and the study pages use: ``workbench.analyses.report`` and ``workbench.study.figures``).

The jobs and the command that writes each are in ``JOBS``; a block of a job whose folder is
missing says so and names that command.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.analyses.patching import best_site, residual_layer, without_final_residual
from workbench.task import GraphSpec

# job folder under results/ -> the command that publishes it (each provenance.json records the command actually run)
JOBS = {
    "main_job": "workbench main --results results/main_job",
    "remedies_quick": "workbench study studies/remedies.toml --subset quick --results results/remedies_quick",
    "solvers": "workbench study studies/solvers.toml --results results/solvers",
    "solvers_controls": "workbench study studies/solvers_controls.toml --results results/solvers_controls",
    "mamba_solvers": "workbench study studies/mamba_solvers.toml --results results/mamba_solvers",
    "deep_solvers": "workbench study studies/deep_solvers.toml --subset cpu --results results/deep_solvers",
    "deep_solvers_gpt": "workbench study studies/deep_solvers.toml --subset solvers --results results/deep_solvers_gpt",
    "deep_solvers_gpt_bst_g24": "workbench study studies/deep_solvers.toml --subset gpt objectives=bst graphs=2,4,50 --cpus 3 --results results/deep_solvers_gpt_bst_g24",
    "deep_solvers_gpt_mtp_g24": "workbench study studies/deep_solvers.toml --subset runs=gpt-mtp-G2_4_50-cpu-s0,gpt-mtp-G2_4_50-cpu-s1,gpt-mtp-G2_4_50-cpu-s2 --cpus 3 --results results/deep_solvers_gpt_mtp_g24",
    "deep_solvers_gpt_mtp_g25": "workbench study studies/deep_solvers.toml --subset gpt graphs=2,5,50 objectives=mtp --results results/deep_solvers_gpt_mtp_g25",
    "deep_solvers_control": "workbench study studies/deep_solvers.toml --subset control --results results/deep_solvers_control",
    "deep_solvers_mamba_g25": "workbench study studies/deep_solvers.toml --subset gpu_mamba objectives=next_token --results results/deep_solvers_mamba_g25",
    "deep_solvers_mamba_g25_remedies": "workbench study studies/deep_solvers.toml --subset gpu_mamba objectives=future_bow,bst,mtp --cpus 3 --results results/deep_solvers_mamba_g25_remedies",
    "deep_solvers_mamba_g24_future_bow": "workbench study studies/deep_solvers.toml --subset runs=mamba-future_bow-G2_4_50-cpu-s0,mamba-future_bow-G2_4_50-cpu-s1,mamba-future_bow-G2_4_50-cpu-s2 --cpus 3 --results results/deep_solvers_mamba_g24_future_bow",
    "deep_solvers_mamba_g24_bst": "workbench study studies/deep_solvers.toml --subset runs=mamba-bst-G2_4_50-cpu-s0,mamba-bst-G2_4_50-cpu-s1,mamba-bst-G2_4_50-cpu-s2 --cpus 3 --results results/deep_solvers_mamba_g24_bst",
    "deep_solvers_mamba_g24_mtp": "workbench study studies/deep_solvers.toml --subset runs=mamba-mtp-G2_4_50-cpu-s0,mamba-mtp-G2_4_50-cpu-s1,mamba-mtp-G2_4_50-cpu-s2 --cpus 3 --results results/deep_solvers_mamba_g24_mtp",
    "deep_solvers_gpt_next_token_g25": "workbench study studies/deep_solvers.toml --subset runs=gpt-next_token-G2_5_50-cpu-s0,gpt-next_token-G2_5_50-cpu-s1,gpt-next_token-G2_5_50-cpu-s2 --results results/deep_solvers_gpt_next_token_g25",
    "remedies_mamba_g23": "workbench study studies/remedies.toml --subset mamba_g23 --cpus 3 --results results/remedies_mamba_g23",
    "depth_first_hops": "workbench study studies/depth.toml --subset first_hops_seeds archs=gpt --results results/depth_first_hops",
    "depth_first_hops_mamba": "workbench study studies/depth.toml --subset first_hops_seeds archs=mamba --results results/depth_first_hops_mamba",
    "depth_deeper_gpt": "workbench study studies/depth.toml --subset deeper_gpt --cpus 3 --results results/depth_deeper_gpt",
    "depth_long_mamba": "workbench study studies/depth_long.toml --subset two_layers --cpus 3 --results results/depth_long_mamba",
    "depth_deeper_mamba_3": "workbench study studies/depth.toml --subset deeper_mamba_3 --results results/depth_deeper_mamba_3",
    "depth_deeper_mamba_4": "workbench study studies/depth.toml --subset deeper_mamba_4 --results results/depth_deeper_mamba_4",
    "depth_long_mamba_3": "workbench study studies/depth_long.toml --subset three_layers seeds=0 --results results/depth_long_mamba_3",
    "depth_lr_mamba": "workbench study studies/depth_lr.toml --subset three_layers four_layers --results results/depth_lr_mamba",
    "depth_lr_mamba_2": "workbench study studies/depth_lr.toml --subset two_layers seeds=0,2 --results results/depth_lr_mamba_2",
    "depth_lr_mamba_1": "workbench study studies/depth_lr.toml --subset one_layer seeds=0,2 --results results/depth_lr_mamba_1",
    "depth_lr_mamba_l5": "workbench study studies/depth_lr.toml --subset three_hops --results results/depth_lr_mamba_l5",
    "depth_lr_gpt_half": "workbench study studies/depth_lr_gpt.toml --subset half --results results/depth_lr_gpt_half",
    "depth_lr_gpt_double": "workbench study studies/depth_lr_gpt.toml --subset double --results results/depth_lr_gpt_double",
    "depth_lr_gpt_double_inspect": "workbench inspect runs/studies/depth_lr_gpt/checkpoints/gpt-first_decision_only-G2_3_50-cpu-n_layers*-lr2e_3-s* --out results/depth_lr_gpt_double_inspect --graphs 2000",
}
BLOCKS: dict[str, Callable[[Results], str]] = {}


class Results:
    """The committed results folder, read lazily: ``table(job, name)`` and ``provenance(job)``."""

    def __init__(self, root: str | Path = "results") -> None:
        self.root = Path(root)
        self._tables: dict[tuple[str, str], pd.DataFrame] = {}

    def path(self, job: str, name: str) -> Path:
        return self.root / job / name

    def table(self, job: str | tuple[str, ...], name: str) -> pd.DataFrame:
        """One job's table, or with a tuple of jobs their tables as one (rows ordered by graph,
        each job's order kept within a graph): a study published in parts reads as one."""
        if isinstance(job, tuple):
            frame = pd.concat([self.table(part, name) for part in job], ignore_index=True)
            return frame.sort_values("graph", kind="stable", ignore_index=True) if "graph" in frame else frame
        if (job, name) not in self._tables:
            path = self.path(job, f"{name}.csv")
            if not path.exists():
                raise FileNotFoundError(f"{path}: not found; the job that writes it: {JOBS.get(job, 'unknown job')}")
            from workbench.study.figures import empty_as_blank

            self._tables[(job, name)] = empty_as_blank(pd.read_csv(path, keep_default_na=False, na_values=[""]))
        return self._tables[(job, name)]

    def provenance(self, job: str) -> dict:
        path = self.path(job, "provenance.json")
        if not path.exists():
            raise FileNotFoundError(f"{path}: not found; the job that writes it: {JOBS.get(job, 'unknown job')}")
        return json.loads(path.read_text())


def block(name: str) -> Callable[[Callable[[Results], str]], Callable[[Results], str]]:
    def register(function: Callable[[Results], str]) -> Callable[[Results], str]:
        if name in BLOCKS:
            raise ValueError(f"block {name!r} registered twice")
        BLOCKS[name] = function
        return function

    return register


# ---- formatting ---------------------------------------------------------------------------

def markdown(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of ``frame``'s cells as they are (format them first)."""
    def cell(value: object) -> str:
        return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(cell, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def num(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def pct(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{100 * value:.{digits}f}%"


def spread(values: pd.Series | list[float], digits: int = 3) -> str:
    """Mean ± sd (n) over seeds; one seed is said as one seed."""
    values = pd.Series(values, dtype=float).dropna()
    if len(values) == 0:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f} (1 seed)"
    sd = values.std()
    sd_digits = digits if sd == 0 or round(sd, digits) > 0 else digits + 1  # a small spread still shows
    return f"{values.mean():.{digits}f} ± {sd:.{sd_digits}f} ({len(values)})"


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def graph_spec(label: str) -> GraphSpec:
    """A study.csv graph label, ``str(GraphSpec)`` ("G(2,5,50)"), back to its spec."""
    return GraphSpec.parse(label.strip("G()"))


def model_label(arch: str, objective: str, overrides: str = "") -> str:
    return f"{arch} {objective}" + (f" ({overrides})" if overrides else "")


# ---- provenance: one sentence per job ------------------------------------------------------

def provenance_sentence(results: Results, job: str) -> str:
    """Command, wall time, seeds, code and machine, as the job recorded them."""
    record = results.provenance(job)
    short = lambda code: f"`{(code.get('commit') or 'unknown')[:10]}{' with local changes' if code.get('dirty') else ''}`"
    commit = short(record) + (f" (the checkout at publishing: {short(record['code_at_publish'])})" if record.get("code_at_publish") else "")
    seeds = record.get("seeds", [])
    seeds_text = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"
    parallel = record.get("parallel_runs")
    threads = f"{record.get('threads')} thread(s) per run, {parallel} run(s) at a time" if parallel else f"{record.get('threads')} threads"
    # runs trained at other thread counts than the gathering invocation's (studies since the runs record it)
    other = [r for r in record.get("runs", []) if r.get("threads") not in (None, record.get("threads"))]
    threads += "".join(f"; {r['run']} trained at {r['threads']} thread(s)" for r in other)
    trained = [r for r in record.get("runs", []) if r.get("train_seconds")]
    train_text = f"; training {duration(min(r['train_seconds'] for r in trained))} to {duration(max(r['train_seconds'] for r in trained))} per run" if trained else ""
    # a study re-run over finished runs only gathers them: its wall time is not their cost
    earlier = sum(1 for r in record.get("runs", []) if r.get("trained_in_this_invocation") is False)
    earlier_text = f" ({earlier} trained by an earlier invocation)" if earlier else ""
    return (f"`{record['command']}`: {duration(record['wall_seconds'])} of wall time for {len(record.get('runs', []))} run(s){earlier_text}{train_text}; "
            f"{seeds_text}. Recorded by the run: commit {commit}, {record['date'][:10]}, torch {record['torch']}, "
            f"{record['device']}, {threads}.")


for _job in JOBS:
    BLOCKS[f"{_job}.provenance"] = (lambda job: lambda results: provenance_sentence(results, job))(_job)
    BLOCKS[f"{_job}.wall_time"] = (lambda job: lambda results: duration(results.provenance(job)["wall_seconds"]))(_job)


# ---- the main job: G(2,5,50), GPT and Mamba under the paper's objectives ---------------------

def _main_results(results: Results) -> pd.DataFrame:
    return results.table("main_job", "results")


def _first_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """Each model's first seed: the main job's single-seed numbers (a second seed of GPT
    next_token is reported beside it where it matters)."""
    first = frame.groupby(["arch", "objective"])["seed"].transform("min")
    return frame[frame["seed"] == first]


def main_value(results: Results, arch: str, objective: str, metric: str, position: str) -> pd.Series:
    """One value of the main job's results per seed of the model."""
    frame = _main_results(results)
    rows = frame[(frame["arch"] == arch) & (frame["objective"] == objective) & (frame["metric"] == metric) & (frame["position"] == position)]
    return rows.set_index("seed")["value"]


@block("main_job.signature")
def signature(results: Results) -> str:
    """GPT next_token's first seed, position by position: what the quick start shows."""
    frame = _main_results(results)
    rows = frame[(frame["arch"] == "gpt") & (frame["objective"] == "next_token")]
    rows = rows[rows["seed"] == rows["seed"].min()]
    table = rows.pivot_table(index="metric", columns="position", values="value", sort=False)
    positions = [c for c in table.columns if c != "path"] + ["path"]
    names = {"tf_accuracy": "teacher-forced accuracy", "greedy_accuracy": "greedy accuracy", "tf_loss": "teacher-forced loss"}
    out = pd.DataFrame({"": [names[m] for m in table.index]})
    for position in positions:
        label = f"{position} (first decision)" if position == "r2" else position
        out[label] = [num(v, 3) if not pd.isna(v) else "" for v in table[position]]
    return markdown(out)


@block("main_job.n_graphs")
def main_n_graphs(results: Results) -> str:
    return f"{int(_main_results(results)['n_graphs'].iloc[0]):,}"


@block("main_job.accuracy")
def main_accuracy(results: Results) -> str:
    """Every model and seed: teacher-forced accuracy per position, r2's loss, greedy path."""
    frame = _main_results(results)
    rows = []
    for (arch, objective, seed), run in frame.groupby(["arch", "objective", "seed"], sort=False):
        value = run.set_index(["metric", "position"])["value"]
        row = {"model": model_label(arch, objective), "seed": seed, "steps": int(run["step"].iloc[0])}
        for position in [p for p in run["position"].unique() if p != "path"]:
            row[f"{position} tf"] = num(value.get(("tf_accuracy", position)))
        row["r2 loss"] = num(value.get(("tf_loss", "r2")), 2)
        row["path (greedy)"] = num(value.get(("greedy_accuracy", "path")))
        rows.append(row)
    return markdown(pd.DataFrame(rows))


def _main_metric(results: Results, arch: str, objective: str, metric: str, position: str) -> str:
    return spread(main_value(results, arch, objective, metric, position))


for _arch in ("gpt", "mamba"):
    for _objective in ("next_token", "reverse", "teacherless", "first_decision_only"):
        for _metric, _position, _key in (("tf_accuracy", "r2", "r2"), ("greedy_accuracy", "path", "path")):
            BLOCKS[f"main_job.{_arch}.{_objective}.{_key}"] = (
                lambda a, o, m, p: lambda results: _main_metric(results, a, o, m, p))(_arch, _objective, _metric, _position)


@block("main_job.later_min")
def later_min(results: Results) -> str:
    """The lowest teacher-forced accuracy of r3..rl over the next_token models: the later tokens are fitted."""
    frame = _main_results(results)
    later = frame[(frame["objective"] == "next_token") & (frame["metric"] == "tf_accuracy") & (frame["role"] != "first_decision")
                  & (frame["position"] != "path") & (frame["position"] != "r1")]
    return pct(later["value"].min())


@block("main_job.cheat")
def main_cheat(results: Results) -> str:
    """The cheat test (a wrong arm fed as the answer so far), the strongest edge-lookup head
    and r2's share of the training gradient, per model that feeds answer tokens."""
    cheat = _first_seed(results.table("main_job", "cheat_test"))
    last = f"r{int(_main_results(results)['path_length'].iloc[0])}"
    cheat = cheat[~cheat["position"].isin(["r1", last])]  # decisions only: r1 (the source) and rl (the goal) are copies
    lookup = results.table("main_job", "edge_lookup")
    shares = results.table("main_job", "gradient_shares")
    rows = []
    for (arch, objective), run in cheat.groupby(["arch", "objective"], sort=False):
        follow = run[run["outcome"] == "follow"].set_index("position")["rate"]
        row = {"model": model_label(arch, objective), "follows the fed wrong arm": ", ".join(f"{p} {pct(r)}" for p, r in sorted(follow.items()))}
        mine = lookup[(lookup["arch"] == arch) & (lookup["objective"] == objective)]
        if len(mine):
            mass = mine.groupby(["position", "layer", "head"])["mass"].sum()
            uniform = mine.groupby(["position", "layer", "head"])["uniform"].sum()
            best = mass.groupby(level="position").idxmax()
            row["strongest edge-lookup head: attention on the looked-up edge (uniform)"] = ", ".join(
                f"{position}: L{layer}H{head} {pct(mass[(position, layer, head)], 0)} ({pct(uniform[(position, layer, head)], 0)})"
                for position, (_, layer, head) in sorted(best.items()))
        else:
            row["strongest edge-lookup head: attention on the looked-up edge (uniform)"] = "n/a (no attention)"
        share = shares[(shares["arch"] == arch) & (shares["objective"] == objective) & (shares["metric"] == "share") & (shares["position"] == "r2")]
        share = share[share["seed"] == share["seed"].min()].sort_values("step")
        row["r2's share of the gradient, first -> last snapshot"] = f"{num(share['value'].iloc[0], 2)} -> {num(share['value'].iloc[-1], 2)}" if len(share) else "n/a"
        rows.append(row)
    return markdown(pd.DataFrame(rows))


def _best(frame: pd.DataFrame, column: str = "accuracy") -> pd.Series | None:
    return frame.loc[frame[column].idxmax()] if len(frame) and frame[column].notna().any() else None


@block("main_job.probes")
def main_probes(results: Results) -> str:
    """Per model and seed: the best goal-arm probe anywhere (with its control task and
    untrained model), the goal node and r2's node at '=' (best hook, with the untrained
    model), and how many of the model's probes converged."""
    probes = results.table("main_job", "probes")
    rows = []
    for (arch, objective, seed), run in probes.groupby(["arch", "objective", "seed"], sort=False):
        row = {"model": model_label(arch, objective), "seed": seed}
        arm = _best(run[run["target"] == "arm"])
        if arm is not None:
            row["goal arm, best probe (site, position)"] = f"{num(arm['accuracy'])} ({arm['site']} L{arm['layer']}, {arm['position']})"
            row["its control task / untrained"] = f"{num(arm['control_accuracy'])} / {num(arm['random_init_accuracy'])}"
        for target, label in (("goal", "goal node at ="), ("node_r2", "r2's node at =")):
            best = _best(run[(run["target"] == target) & (run["position"] == "eq")])
            if best is not None:
                row[f"{label} (untrained)"] = f"{num(best['accuracy'])} ({num(best['random_init_accuracy'])})"
        row["converged"] = f"{int(run['converged'].astype(str).eq('True').sum())}/{len(run)}"
        rows.append(row)
    return markdown(pd.DataFrame(rows))


@block("main_job.arm_max")
def arm_max(results: Results) -> str:
    """The best goal-arm probe over every model, hook and position of the main job."""
    probes = results.table("main_job", "probes")
    return num(probes[probes["target"] == "arm"]["accuracy"].max())


@block("main_job.probe_counts")
def probe_counts(results: Results) -> str:
    probes = results.table("main_job", "probes")
    return f"{int(probes['converged'].astype(str).eq('True').sum())} of {len(probes)}"


@block("main_job.patching")
def main_patching(results: Results) -> str:
    """Goal patching per model: r2's logit difference clean and with the goal moved, and the
    site whose clean activation restores most of it (residual stream and Mamba's SSM state),
    leaving out the residual after the last block, which restores all of it at the slot that
    emits r2 by construction (``patching.best_site``)."""
    patching = _first_seed(results.table("main_job", "patching"))
    rows = []
    for (arch, objective), run in patching.groupby(["arch", "objective"], sort=False):
        first = run.iloc[0]
        row = {"model": model_label(arch, objective), "r2 logit difference: clean / goal moved": f"{num(first['ld_clean'], 2)} / {num(first['ld_corrupted'], 2)}"}
        best = best_site(run)
        row["best site before the last block: recovered"] = "undefined (r2 ignores the goal)" if best is None else f"{best['site']} L{best['layer']} @ {best['position']}: {pct(best['recovered'])}"
        at_eq = _best(run[run["position"] == "eq"], "recovered")
        row["at =, best layer: recovered"] = "undefined" if at_eq is None else f"{pct(at_eq['recovered'])} ({at_eq['site']} L{at_eq['layer']})"
        rows.append(row)
    return markdown(pd.DataFrame(rows))


@block("main_job.patching.reverse_embed_goal")
def reverse_embed_goal(results: Results) -> str:
    """Under ``reverse`` the goal is emitted first and fed back as the input of the slot that
    emits r2 (position r_l): what patching that slot's token embedding alone restores, per arch."""
    patching = _first_seed(results.table("main_job", "patching"))
    reverse = patching[patching["objective"] == "reverse"]
    if reverse.empty:
        raise ValueError("results/main_job/patching.csv: no reverse model")
    parts = []
    for arch, run in reverse.groupby("arch", sort=False):
        goal_slot = max(run["position"][run["position"].str.fullmatch(r"r\d+")], key=lambda p: int(p[1:]))
        parts.append(f"{arch} {pct(run[(run['hook'] == 'hook_embed') & (run['position'] == goal_slot)]['recovered'].iloc[0])}")
    return ", ".join(parts)


# ---- studies ----------------------------------------------------------------------------------

def _study(results: Results, job: str | tuple[str, ...]) -> pd.DataFrame:
    return results.table(job, "study")


def _per_run_best(frame: pd.DataFrame, metric: str, position: str, residual_only: bool = True) -> pd.Series:
    """Per run: the best value of ``metric`` over hooks at ``position``."""
    rows = frame[(frame["metric"] == metric) & (frame["position"] == position)]
    if residual_only:
        rows = rows[rows["hook"].map(residual_layer).notna()]
    return rows.groupby("run", sort=False)["value"].max()


def _per_run(frame: pd.DataFrame, metric: str, position: str) -> pd.Series:
    rows = frame[(frame["metric"] == metric) & (frame["position"] == position) & (frame["hook"] == "")]
    return rows.set_index("run")["value"]


def _models(frame: pd.DataFrame) -> list[tuple[tuple[str, str, str, str], pd.DataFrame]]:
    return list(frame.groupby(["arch", "objective", "graph", "overrides"], sort=False))


def solvers_summary(results: Results, job: str | tuple[str, ...]) -> str:
    """Per model, mean ± sd over seeds: r2 accuracy; r2's node at '=' and at r1 (best residual
    layer), each beside the untrained model; the share of r2's logit difference that patching
    restores at '=' and at r1 (best site before the last block's output, which restores all or
    nothing by construction: ``without_final_residual``; residual stream and, for Mamba, every
    block's SSM state); and,
    where the study patched the untrained twin too, how far moving the goal moves r2's logit
    difference in the model and in its twin (the control of "used")."""
    frame = _study(results, job)
    rows = []
    for (arch, objective, graph, overrides), model in _models(frame):
        r2 = _per_run(model, "tf_accuracy", "r2")
        row = {"model": model_label(arch, objective, overrides), "graph": graph,
               "r2 accuracy per seed": " / ".join(num(v) for v in r2), "r2 accuracy": spread(r2)}
        for position in ("eq", "r1"):
            row[f"r2's node at {'=' if position == 'eq' else position}"] = spread(_per_run_best(model, "probe_node_r2", position))
            row[f"untrained at {'=' if position == 'eq' else position}"] = spread(_per_run_best(model, "probe_node_r2_untrained", position))
        for position in ("eq", "r1"):
            recovered = _per_run_best(without_final_residual(model), "patching_recovered", position, residual_only=False).reindex(r2.index)
            row[f"patching recovers at {'=' if position == 'eq' else position}, before the last block"] = (
                "undefined" if recovered.isna().all() else spread(recovered))
        if (model["metric"] == "patching_ld_clean_untrained").any():  # studies run since the patching stage patches the twin too
            gap = {suffix: (_per_run(model, f"patching_ld_clean{suffix}", "r2") - _per_run(model, f"patching_ld_corrupted{suffix}", "r2")).abs()
                   for suffix in ("", "_untrained")}
            row["moving the goal moves r2's logit difference by (untrained)"] = f"{spread(gap[''], 2)} ({spread(gap['_untrained'], 2)})"
        rows.append(row)
    return markdown(pd.DataFrame(rows))


def solvers_layers(results: Results, job: str | tuple[str, ...], objectives: tuple[str, ...] | None = None, solved: float | None = None) -> str:
    """Layer by layer (mean over seeds): r2's node decodable at '=' and at r1 (untrained in
    brackets), and patching recovery there, for each model. With ``solved``, only the seeds
    whose r2 accuracy reaches it (where the model is a solver), and the model says how many."""
    frame = _study(results, job)
    rows = []
    several_graphs = frame["graph"].nunique() > 1
    for (arch, objective, graph, overrides), model in _models(frame):
        if objectives and objective not in objectives:
            continue
        shown = model_label(arch, objective, overrides) + (f" on {graph}" if several_graphs else "")
        if solved is not None:
            r2 = _per_run(model, "tf_accuracy", "r2")
            model = model[model["run"].isin(r2[r2 >= solved].index)]
            shown += f", the {len(model['run'].unique())} of {len(r2)} seeds with r2 >= {solved:g}"
            if model.empty:
                continue
        from workbench.probes.activations import hook_layer

        model = model.assign(layer=model["hook"].map(residual_layer))
        means = model.dropna(subset=["layer"]).groupby(["metric", "position", "layer"])["value"].mean()
        ssm = model[model["hook"].str.endswith("hook_ssm_state") & (model["metric"] == "patching_recovered")]
        ssm_means = ssm.assign(layer=ssm["hook"].map(hook_layer)).groupby(["position", "layer"])["value"].mean() if len(ssm) else None
        for layer in sorted(model["layer"].dropna().unique()):
            row = {"model": shown, "after": "embedding" if layer == 0 else f"block {int(layer) - 1}"}
            for position, label in (("eq", "="), ("r1", "r1")):
                row[f"r2's node at {label} (untrained)"] = (f"{pct(means.get(('probe_node_r2', position, layer)))} "
                                                           f"({pct(means.get(('probe_node_r2_untrained', position, layer)))})")
            for position, label in (("eq", "="), ("r1", "r1")):
                row[f"patching {label}"] = pct(means.get(("patching_recovered", position, layer)))
            if ssm_means is not None:
                for position, label in (("eq", "="), ("r1", "r1")):
                    row[f"SSM state patching {label}"] = pct(ssm_means.get((position, layer))) if layer > 0 else ""
            rows.append(row)
    return markdown(pd.DataFrame(rows))


# The 4-layer GPT solvers, published in three parts: future_bow and bst of G(2,5,50) trained on a GPU
# with future_bow of G(2,4,50) on the CPU, then bst and mtp of G(2,4,50) and mtp of G(2,5,50) on the CPU.
GPT_SOLVERS = ("deep_solvers_gpt", "deep_solvers_gpt_bst_g24", "deep_solvers_gpt_mtp_g24", "deep_solvers_gpt_mtp_g25")
# The objectives of each graph in GPT_SOLVERS.
GPT_SOLVER_OBJECTIVES = {"G(2,4,50)": ("future_bow", "bst", "mtp"), "G(2,5,50)": ("future_bow", "bst", "mtp")}
# The 2-layer Mamba's remedies on G(2,4,50) on the CPU, one objective per part.
MAMBA_G24 = ("deep_solvers_mamba_g24_future_bow", "deep_solvers_mamba_g24_bst", "deep_solvers_mamba_g24_mtp")
# The 4-layer GPT under next_token at the solvers' budget, the control beside them: G(2,4,50), then G(2,5,50).
CONTROL = ("deep_solvers_control", "deep_solvers_gpt_next_token_g25")
# Blocks named for a study published in parts: name -> its parts.
PARTS = {"deep_solvers_gpt": GPT_SOLVERS, "deep_solvers_mamba_g24": MAMBA_G24, "deep_solvers_control": CONTROL}

for _job in ("solvers", "solvers_controls", "mamba_solvers", "deep_solvers", "deep_solvers_gpt", "deep_solvers_control", "deep_solvers_mamba_g25",
             "deep_solvers_mamba_g25_remedies", "deep_solvers_mamba_g24"):
    _jobs = PARTS.get(_job, _job)
    BLOCKS[f"{_job}.summary"] = (lambda job: lambda results: solvers_summary(results, job))(_jobs)
    BLOCKS[f"{_job}.layers"] = (lambda job: lambda results: solvers_layers(results, job))(_jobs)
BLOCKS["deep_solvers.layers_solved"] = lambda results: solvers_layers(results, "deep_solvers", solved=0.9)


def study_value(results: Results, job: str | tuple[str, ...], objective: str, metric: str, position: str, best_over_hooks: bool, arch: str | None = None,
                graph: str | None = None) -> pd.Series:
    frame = _study(results, job)
    frame = frame[(frame["objective"] == objective) & ((frame["arch"] == arch) if arch else True) & ((frame["graph"] == graph) if graph else True)]
    return (_per_run_best(frame, metric, position, residual_only=False) if best_over_hooks else _per_run(frame, metric, position))


# Inline numbers the prose cites: name -> (job, objective, metric, position, best over hooks)
VALUES = {
    "solvers.bst.node_r2_eq": ("solvers", "bst", "probe_node_r2", "eq", True),
    "solvers.bst.patching_eq": ("solvers", "bst", "patching_recovered", "eq", True),
    "solvers.mtp.r2": ("solvers", "mtp", "tf_accuracy", "r2", False),
    "solvers.mtp.node_r2_eq": ("solvers", "mtp", "probe_node_r2", "eq", True),
    "solvers.reverse.r2": ("solvers", "reverse", "tf_accuracy", "r2", False),
    "solvers.next_token.r2": ("solvers", "next_token", "tf_accuracy", "r2", False),
    "mamba_solvers.reverse.patching_eq": ("mamba_solvers", "reverse", "patching_recovered", "eq", True),
    "mamba_solvers.reverse.node_r2_eq": ("mamba_solvers", "reverse", "probe_node_r2", "eq", True),
    "mamba_solvers.bst.node_r2_eq": ("mamba_solvers", "bst", "probe_node_r2", "eq", True),
    "mamba_solvers.bst.patching_eq": ("mamba_solvers", "bst", "patching_recovered", "eq", True),
    "mamba_solvers.next_token.r2": ("mamba_solvers", "next_token", "tf_accuracy", "r2", False),
    "deep_solvers.next_token.r2": ("deep_solvers", "next_token", "tf_accuracy", "r2", False),
    "deep_solvers.next_token.path": ("deep_solvers", "next_token", "greedy_accuracy", "path", False),
    "deep_solvers.next_token.node_r2_eq": ("deep_solvers", "next_token", "probe_node_r2", "eq", True),
    "deep_solvers.next_token.node_r2_r1": ("deep_solvers", "next_token", "probe_node_r2", "r1", True),
    "deep_solvers.next_token.patching_eq": ("deep_solvers", "next_token", "patching_recovered", "eq", True),
    "deep_solvers.next_token.patching_r1": ("deep_solvers", "next_token", "patching_recovered", "r1", True),
    "deep_solvers.next_token.goal_eq": ("deep_solvers", "next_token", "probe_goal", "eq", True),
    "deep_solvers.next_token.goal_eq_untrained": ("deep_solvers", "next_token", "probe_goal_untrained", "eq", True),
    "deep_solvers_mamba_g25.next_token.r2": ("deep_solvers_mamba_g25", "next_token", "tf_accuracy", "r2", False),
    "deep_solvers_mamba_g25.next_token.node_r2_eq": ("deep_solvers_mamba_g25", "next_token", "probe_node_r2", "eq", True),
    "deep_solvers_mamba_g25.next_token.node_r2_eq_untrained": ("deep_solvers_mamba_g25", "next_token", "probe_node_r2_untrained", "eq", True),
}
for _name, (_job, _objective, _metric, _position, _best_hook) in VALUES.items():
    BLOCKS[_name] = (lambda j, o, m, p, b: lambda results: spread(study_value(results, j, o, m, p, b)))(_job, _objective, _metric, _position, _best_hook)

# The same for a study of several graphs, one graph's runs: name -> (job, objective, graph, metric, position, best over hooks)
GRAPH_VALUES = {
    f"deep_solvers_gpt.{tag}.{objective}.{name}": (GPT_SOLVERS, objective, graph, metric, position, True)
    for tag, graph in (("g24", "G(2,4,50)"), ("g25", "G(2,5,50)"))
    for objective in GPT_SOLVER_OBJECTIVES[graph]
    for name, metric, position in (("node_r2_eq", "probe_node_r2", "eq"), ("node_r2_eq_untrained", "probe_node_r2_untrained", "eq"),
                                   ("node_r2_r1", "probe_node_r2", "r1"), ("patching_eq", "patching_recovered", "eq"))
}
# The control, one graph at a time: each answer token's accuracy, and r2's node at '=' and r1
# beside the untrained twin. G(2,4,50)'s blocks keep the names they had before G(2,5,50) joined.
for _prefix, _graph, _answers in (("", "G(2,4,50)", ("r2", "r3", "r4")), ("g25.", "G(2,5,50)", ("r2", "r3", "r4", "r5"))):
    for _position in _answers:
        GRAPH_VALUES[f"deep_solvers_control.{_prefix}next_token.{_position}"] = (CONTROL, "next_token", _graph, "tf_accuracy", _position, False)
    for _name, _metric, _position in (("node_r2_eq", "probe_node_r2", "eq"), ("node_r2_eq_untrained", "probe_node_r2_untrained", "eq"),
                                      ("node_r2_r1", "probe_node_r2", "r1"), ("node_r2_r1_untrained", "probe_node_r2_untrained", "r1")):
        GRAPH_VALUES[f"deep_solvers_control.{_prefix}next_token.{_name}"] = (CONTROL, "next_token", _graph, _metric, _position, True)
for _name, (_job, _objective, _graph, _metric, _position, _best_hook) in GRAPH_VALUES.items():
    BLOCKS[_name] = (lambda j, o, g, m, p, b: lambda results: spread(study_value(results, j, o, m, p, b, graph=g)))(
        _job, _objective, _graph, _metric, _position, _best_hook)


@block("deep_solvers_gpt.patching_eq_max")
def largest_patching_at_eq(results: Results) -> str:
    """The largest share of r2's logit difference that patching '=' restores, over every
    future_bow and bst run (every graph and seed, learned or not) and layer of the study: the
    test of "uses what '=' holds", taken where it is hardest to pass (mtp, which does route
    the goal through '=', has its own per-seed blocks)."""
    frame = _study(results, GPT_SOLVERS)
    recovered = frame[(frame["metric"] == "patching_recovered") & (frame["position"] == "eq")
                      & frame["objective"].isin(["future_bow", "bst"])]["value"]
    return pct(recovered.max())


def r2_curve(results: Results, job: str | tuple[str, ...], every: int = 1_000, graph: str | None = None) -> str:
    """Held-out r2 accuracy (teacher-forced) every ``every`` steps, one row per run
    (``curves.csv``: each run's metrics.jsonl), of one graph's runs if ``graph`` is given."""
    curves = results.table(job, "curves")
    r2 = curves[(curves["split"] == "test") & (curves["metric"] == "tf_accuracy") & (curves["position"] == "r2") & (curves["step"] % every == 0)
                & ((curves["graph"] == graph) if graph else True)]
    if r2.empty:
        raise ValueError(f"results/{job}/curves.csv: no held-out r2 accuracy" + (f" on {graph}" if graph else ""))
    table = r2.pivot_table(index=["arch", "objective", "graph", "overrides", "seed"], columns="step", values="value", sort=False)
    rows = [{"model": model_label(arch, objective, overrides), "graph": graph, "seed": seed, **{f"step {step:,}": num(v) for step, v in values.items()}}
            for (arch, objective, graph, overrides, seed), values in table.iterrows()]
    return markdown(pd.DataFrame(rows))


def first_steps(curve: pd.DataFrame, solved: float) -> dict[int, int | None]:
    """Per seed of one metric's ``curves.csv`` rows, in seed order, the first evaluated step at
    which the value reached ``solved``, or None where it never did."""
    return {int(seed): (int(run.loc[run["value"] >= solved, "step"].min()) if (run["value"] >= solved).any() else None)
            for seed, run in curve.groupby("seed", sort=True)}


def first_step_solved(results: Results, job: str | tuple[str, ...], objective: str, graph: str, solved: float = 0.9) -> str:
    """Per seed, the first evaluation at which held-out r2 (teacher-forced) reached ``solved``
    (``curves.csv``), or that it never did: how much of the schedule learning took."""
    curves = results.table(job, "curves")
    r2 = curves[(curves["split"] == "test") & (curves["metric"] == "tf_accuracy") & (curves["position"] == "r2")
                & (curves["objective"] == objective) & (curves["graph"] == graph)]
    if r2.empty:
        raise ValueError(f"results/{job}/curves.csv: no held-out r2 accuracy of {objective} on {graph}")
    last = r2.groupby("seed")["step"].max()
    return "; ".join(f"seed {seed}: " + (f"step {step:,}" if step is not None else f"not by step {int(last[seed]):,}")
                     for seed, step in first_steps(r2, solved).items())


for _tag, _graph in (("g24", "G(2,4,50)"), ("g25", "G(2,5,50)")):
    for _objective in GPT_SOLVER_OBJECTIVES[_graph]:
        BLOCKS[f"deep_solvers_gpt.{_tag}.{_objective}.first_solved"] = (
            lambda o, g: lambda results: first_step_solved(results, GPT_SOLVERS, o, g))(_objective, _graph)
BLOCKS["deep_solvers.curve"] = lambda results: r2_curve(results, "deep_solvers")
BLOCKS["deep_solvers_gpt.curve"] = lambda results: r2_curve(results, GPT_SOLVERS)
BLOCKS["deep_solvers_control.curve"] = lambda results: r2_curve(results, CONTROL)
BLOCKS["deep_solvers_mamba_g25.curve"] = lambda results: r2_curve(results, "deep_solvers_mamba_g25", every=1_500)
BLOCKS["depth_deeper_gpt.curve_l3"] = lambda results: r2_curve(results, "depth_deeper_gpt", every=500, graph="G(2,3,50)")


def edge_slots_table(results: Results, job: str) -> str:
    """Per run, r2 accuracy (teacher-forced) over the graphs where the goal's edge, or the
    source's edge onto r2, is the prompt's first or its last edge, and over all graphs: a model
    that learned the hop as a rule scores alike everywhere, one that learned it slot by slot
    does not (``workbench.analyses.edge_order``)."""
    frame = results.table(job, "edge_slots")
    last = frame["goal_edge_slot"].max()
    rows = []
    for (layers, seed), runs in frame.groupby(["layers", "seed"], sort=True):
        def accuracy(where: pd.Series | slice) -> str:
            part = runs[where]
            return num((part["r2_accuracy"] * part["n_graphs"]).sum() / part["n_graphs"].sum())

        row = {"model": model_label(runs["arch"].iloc[0], runs["objective"].iloc[0]), "layers": layers, "seed": seed}
        for edge in ("goal", "source"):
            row[f"{edge} edge first"] = accuracy(runs[f"{edge}_edge_slot"] == 0)
            row[f"{edge} edge last"] = accuracy(runs[f"{edge}_edge_slot"] == last)
        row["all graphs"] = accuracy(slice(None))
        rows.append(row)
    return markdown(pd.DataFrame(rows))


BLOCKS["depth_lr_gpt_double_inspect.edge_slots"] = lambda results: edge_slots_table(results, "depth_lr_gpt_double_inspect")
BLOCKS["depth_lr_gpt_double.curve_l3"] = lambda results: r2_curve(results, "depth_lr_gpt_double", every=500, graph="G(2,3,50)")
BLOCKS["depth_long_mamba.curve"] = lambda results: r2_curve(results, "depth_long_mamba")
BLOCKS["depth_deeper_mamba_3.curve_l4"] = lambda results: r2_curve(results, "depth_deeper_mamba_3", graph="G(2,4,50)")
BLOCKS["depth_deeper_mamba_4.curve_l4"] = lambda results: r2_curve(results, "depth_deeper_mamba_4", graph="G(2,4,50)")
BLOCKS["depth_long_mamba_3.curve"] = lambda results: r2_curve(results, "depth_long_mamba_3", every=500)
BLOCKS["depth_lr_mamba.curve"] = lambda results: r2_curve(results, "depth_lr_mamba")
BLOCKS["deep_solvers_mamba_g24.curve"] = lambda results: r2_curve(results, MAMBA_G24)
BLOCKS["deep_solvers_mamba_g25_remedies.curve"] = lambda results: r2_curve(results, "deep_solvers_mamba_g25_remedies", every=1_500)


@block("solvers.mtp.seeds_solved")
def mtp_seeds_solved(results: Results) -> str:
    r2 = study_value(results, "solvers", "mtp", "tf_accuracy", "r2", False)
    return f"{int((r2 > 0.9).sum())} of {len(r2)}"


def remedies_summary(results: Results, job: str) -> str:
    """Per objective (one seed each unless more were run): r2 accuracy and loss, greedy path,
    the best goal-arm probe at '=' with its control task and untrained model, the goal node
    at '=', and patching recovery (best site before the last block's output, and at '=')."""
    from workbench.study.figures import per_seed

    seeds = per_seed(_study(results, job))
    rows = []
    for (objective, arch, graph, overrides), model in seeds.groupby(["objective", "arch", "graph", "overrides"], sort=False):
        defined = model["patching_recovered"].notna().any()
        show = spread if len(model) > 1 else (lambda values, digits=3: num(pd.Series(values).iloc[0], digits))  # one seed: its number, the seeds column says so
        rows.append({
            "model": model_label(arch, objective, overrides), "graph": graph, "seeds": len(model),
            "r2 accuracy": show(model["r2_accuracy"]), "r2 loss": show(model["r2_loss"], 2), "path (greedy)": show(model["path_accuracy"]),
            "goal arm at = (control task / untrained)": f"{show(model['arm_probe'])} ({num(model['arm_probe_control'].mean())} / {num(model['arm_probe_untrained'].mean())})",
            "goal node at =": show(model["goal_at_eq"]),
            "patching: best site before the last block / at =": f"{show(model['patching_recovered'])} / {show(model['patching_at_eq'])}" if defined else "undefined (r2 ignores the goal)",
        })
    return markdown(pd.DataFrame(rows))


for _job in ("remedies_quick", "remedies_mamba_g23"):
    BLOCKS[f"{_job}.summary"] = (lambda job: lambda results: remedies_summary(results, job))(_job)


@block("remedies_quick.arm_max")
def remedies_arm_max(results: Results) -> str:
    from workbench.study.figures import per_seed

    return num(per_seed(_study(results, "remedies_quick"))["arm_probe"].max())


def depth_frame(results: Results, job: str | tuple[str, ...]) -> pd.DataFrame:
    """One row per depth-study run (``per_seed``'s: seed, r2 accuracy and loss, and under a
    plateau rule the steps trained and what ended training, "plateau", "solved" or "cap"),
    with its layers (from its overrides), path length and degree (from its graph)."""
    from workbench.study.figures import per_seed

    frame = per_seed(_study(results, job)).rename(columns={"r2_accuracy": "r2"})
    frame["layers"] = [int(dict(item.split("=", 1) for item in o.split())["model.n_layers"]) for o in frame["overrides"]]
    specs = [graph_spec(graph) for graph in frame["graph"]]
    frame["path_length"] = [spec.path_length for spec in specs]
    frame["degree"] = [spec.degree for spec in specs]
    if "train_steps" in frame:
        frame["train_steps"] = frame["train_steps"].astype("Int64")
    return frame


def depth_table(results: Results, job: str) -> str:
    """r2 accuracy (and its loss) by layers x path length, one row per (arch, objective,
    layers, seed); under a plateau rule each cell also says how training ended and when."""
    frame = depth_frame(results, job)
    rows = []
    for (arch, objective, layers, seed), group in frame.groupby(["arch", "objective", "layers", "seed"], sort=True):
        row = {"model": model_label(arch, objective), "layers": layers, "seed": seed}
        for _, run in group.sort_values("path_length").iterrows():
            ended = f", {run['stopped_by']} at {int(run['train_steps']):,}" if isinstance(run.get("stopped_by"), str) else ""
            row[f"l = {run['path_length']} ({run['path_length'] - 2} hops)"] = f"{num(run['r2'])} ({num(run['r2_loss'], 2)}{ended})"
        rows.append(row)
    return markdown(pd.DataFrame(rows))


LEARNED = 0.9  # r2 accuracy from which a cell of the depth grid counts as learned


def _cell_runs(results: Results, job: str, layers: int, path_length: int) -> pd.DataFrame:
    """``depth_frame``'s runs of one cell (layers, path length), by seed."""
    frame = depth_frame(results, job)
    cell = frame[(frame["layers"] == layers) & (frame["path_length"] == path_length)].sort_values("seed")
    if cell.empty:
        raise ValueError(f"results/{job}: no run with {layers} layers at l = {path_length}")
    return cell


def depth_cell(results: Results, job: str, layers: int, path_length: int) -> str:
    """One cell of the depth grid over seeds: how many learned r2, and each seed's r2."""
    cell = _cell_runs(results, job, layers, path_length)
    return f"{int((cell['r2'] >= LEARNED).sum())} of {len(cell)} seeds (r2 {' / '.join(num(v) for v in cell['r2'])})"


def peak_lr(arch: str, objective: str, preset: str, overrides: str) -> float:
    """A run's peak learning rate, resolved as the run's config was: its preset under its
    overrides (``train.lr`` if one sets it)."""
    from workbench.config import apply_overrides, preset_config

    return apply_overrides(preset_config(preset, objective=objective, arch=arch), (overrides or "").split()).train.lr


def with_peak_lr(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (rows of runs) with each run's peak ``lr`` (``peak_lr``)."""
    return frame.assign(lr=[peak_lr(*run) for run in zip(frame["arch"], frame["objective"], frame["preset"], frame["overrides"])])


def lr_label(lr: float) -> str:
    from workbench.study.figures import lr_text

    return f"lr {lr_text(lr)}"


# The depth cells run at two peak learning rates, at l = 4 under the same 8,000-step cap: the
# grid's (studies/depth.toml, the Mamba preset's 5e-3) and half of it (studies/depth_lr.toml).
DEPTH_LR_JOBS = ("depth_first_hops_mamba", "depth_deeper_mamba_3", "depth_deeper_mamba_4", "depth_lr_mamba", "depth_lr_mamba_2", "depth_lr_mamba_1")
DEPTH_LR_GRAPH = "G(2,4,50)"


def depth_by_lr(results: Results, jobs: tuple[str, ...] = DEPTH_LR_JOBS, graph: str = DEPTH_LR_GRAPH) -> pd.DataFrame:
    """``depth_frame``'s rows of ``graph`` over ``jobs``, with each run's peak ``lr``, for the
    (arch, objective, layers) cells run at more than one learning rate."""
    frame = depth_frame(results, jobs)
    frame = with_peak_lr(frame[frame["graph"] == graph])
    rates = frame.groupby(["arch", "objective", "layers"])["lr"].transform("nunique")
    if not (rates > 1).any():
        raise ValueError(f"results/{{{','.join(jobs)}}}: no cell on {graph} was run at two learning rates")
    return frame[rates > 1]


def depth_lr_table(results: Results, jobs: tuple[str, ...] = DEPTH_LR_JOBS, graph: str = DEPTH_LR_GRAPH) -> str:
    """Each seed of the cells run at several peak learning rates, side by side: r2 at the end
    (its loss, how training ended and when)."""
    frame = depth_by_lr(results, jobs, graph)
    rows = []
    for (arch, objective, layers, seed), group in frame.groupby(["arch", "objective", "layers", "seed"], sort=True):
        row = {"model": model_label(arch, objective), "layers": layers, "seed": seed}
        for _, run in group.sort_values("lr", ascending=False).iterrows():
            row[f"r2 at {lr_label(run['lr'])}"] = f"{num(run['r2'])} ({num(run['r2_loss'], 2)}, {run['stopped_by']} at {int(run['train_steps']):,})"
        rows.append(row)
    return markdown(pd.DataFrame(rows))


def depth_lr_learned(results: Results, jobs: tuple[str, ...] = DEPTH_LR_JOBS, graph: str = DEPTH_LR_GRAPH) -> str:
    """Per cell and learning rate: how many seeds learned r2 (>= ``LEARNED``)."""
    frame = depth_by_lr(results, jobs, graph)
    parts = []
    for (arch, layers), cell in frame.groupby(["arch", "layers"], sort=True):
        counts = [f"{int((runs['r2'] >= LEARNED).sum())} of {len(runs)} at {lr_label(lr)}"
                  for lr, runs in cell.groupby("lr", sort=True)][::-1]
        parts.append(f"{layers} layer{'s' if layers != 1 else ''}: " + ", ".join(counts))
    return "; ".join(parts)


BLOCKS["depth_lr_mamba.by_lr"] = depth_lr_table
BLOCKS["depth_lr_mamba.learned_by_lr"] = depth_lr_learned

# The GPT's first hop (l = 3) at its preset's peak rate (1e-3, studies/depth.toml) and at half
# and twice it (studies/depth_lr_gpt.toml), with the copy (l = 2) at each rate as the control.
DEPTH_LR_GPT_JOBS = ("depth_first_hops", "depth_deeper_gpt", "depth_lr_gpt_half", "depth_lr_gpt_double")
DEPTH_LR_GPT_GRAPH = "G(2,3,50)"
BLOCKS["depth_lr_gpt.by_lr"] = lambda results: depth_lr_table(results, DEPTH_LR_GPT_JOBS, DEPTH_LR_GPT_GRAPH)
BLOCKS["depth_lr_gpt.learned_by_lr"] = lambda results: depth_lr_learned(results, DEPTH_LR_GPT_JOBS, DEPTH_LR_GPT_GRAPH)


def depth_lr_curves(results: Results, jobs: tuple[str, ...] = DEPTH_LR_JOBS, graph: str = DEPTH_LR_GRAPH) -> pd.DataFrame:
    """``curves.csv`` of ``depth_by_lr``'s runs, with their layers and peak ``lr``."""
    runs = depth_by_lr(results, jobs, graph).set_index("run")
    curves = results.table(jobs, "curves")
    curves = curves[curves["run"].isin(runs.index)].copy()
    curves["layers"] = curves["run"].map(runs["layers"])
    curves["lr"] = curves["run"].map(runs["lr"])
    return curves


BLOCKS["depth_deeper_gpt.four_layers_one_hop"] = lambda results: depth_cell(results, "depth_deeper_gpt", 4, 3)
BLOCKS["depth_first_hops_mamba.two_layers_two_hops"] = lambda results: depth_cell(results, "depth_first_hops_mamba", 2, 4)
BLOCKS["depth_long_mamba.two_layers_two_hops"] = lambda results: depth_cell(results, "depth_long_mamba", 2, 4)
BLOCKS["depth_deeper_mamba_3.three_layers_two_hops"] = lambda results: depth_cell(results, "depth_deeper_mamba_3", 3, 4)
BLOCKS["depth_deeper_mamba_4.four_layers_two_hops"] = lambda results: depth_cell(results, "depth_deeper_mamba_4", 4, 4)
BLOCKS["depth_long_mamba_3.three_layers_two_hops"] = lambda results: depth_cell(results, "depth_long_mamba_3", 3, 4)
BLOCKS["depth_lr_mamba.three_layers_two_hops"] = lambda results: depth_cell(results, "depth_lr_mamba", 3, 4)
BLOCKS["depth_lr_mamba.four_layers_two_hops"] = lambda results: depth_cell(results, "depth_lr_mamba", 4, 4)
BLOCKS["depth_lr_mamba_2.two_layers_two_hops"] = lambda results: depth_cell(results, "depth_lr_mamba_2", 2, 4)
BLOCKS["depth_lr_mamba_1.one_layer_two_hops"] = lambda results: depth_cell(results, "depth_lr_mamba_1", 1, 4)


def r2_loss_against_chance(results: Results, job: str, layers: int, path_length: int) -> str:
    """Each seed's final held-out r2 loss in one depth cell, against ln d: the loss of a guess
    spread evenly over the source's d children, where a run that has learned which nodes r2
    can be but not which of them it is sits. Four digits: a loss at chance is near ln d."""
    cell = _cell_runs(results, job, layers, path_length)
    degree = int(cell["degree"].iloc[0])  # one graph per cell
    chance = math.log(degree)
    above = int((cell["r2_loss"] > chance).sum())
    return f"{' / '.join(num(v, 4) for v in cell['r2_loss'])} ({above} of {len(cell)} above ln {degree} = {num(chance, 4)})"


for _layers, _word in ((3, "three_layers"), (4, "four_layers")):
    BLOCKS[f"depth_lr_mamba_l5.{_word}_three_hops"] = (lambda layers: lambda results: depth_cell(results, "depth_lr_mamba_l5", layers, 5))(_layers)
    BLOCKS[f"depth_lr_mamba_l5.{_word}_r2_loss"] = (lambda layers: lambda results: r2_loss_against_chance(results, "depth_lr_mamba_l5", layers, 5))(_layers)
BLOCKS["depth_lr_mamba_l5.curve"] = lambda results: r2_curve(results, "depth_lr_mamba_l5")
# each seed at 2.5e-3 over l = 4 and 5: the hop it learned and how the next one ended
BLOCKS["depth_lr_mamba_l5.hops_with_l4"] = lambda results: depth_hops(results, ("depth_lr_mamba", "depth_lr_mamba_l5"))
for _layers, _word in ((1, "one_layer"), (2, "two_layers"), (3, "three_layers"), (4, "four_layers")):
    for _job in ("depth_lr_gpt_half", "depth_lr_gpt_double"):
        BLOCKS[f"{_job}.{_word}_one_hop"] = (lambda job, layers: lambda results: depth_cell(results, job, layers, 3))(_job, _layers)


def _hops_of(runs: pd.DataFrame) -> tuple[int | None, pd.Series | None]:
    """One seed's runs of a depth row: the most hops at which r2 is learned (None: none), and
    the run of the first path length beyond it that is not (None: all tried learned)."""
    learned = runs[runs["r2"] >= LEARNED]["hops"]
    most = int(learned.max()) if len(learned) else None
    beyond = runs[(runs["r2"] < LEARNED) & (runs["hops"] > (-1 if most is None else most))].sort_values("hops")
    return most, (None if beyond.empty else beyond.iloc[0])


def _hops_text(most: int | None, fewest: int) -> str:
    """Hops learned as said in a table: a runs' set that tried only from ``fewest`` hops on and
    learned none of them says only that it learned fewer than that."""
    if most is not None and most >= 0:
        return str(most)
    return "none" if fewest == 0 else f"fewer than {fewest}"


def _ended(first_fail: pd.Series | None) -> str:
    """How the first unlearned path length's run ended: the rule's verdict, or "fixed budget"
    for a run trained without a rule; "" when every length tried was learned."""
    if first_fail is None:
        return ""
    return first_fail["stopped_by"] if isinstance(first_fail.get("stopped_by"), str) else "fixed budget"


def depth_hops(results: Results, job: str | tuple[str, ...]) -> str:
    """Hops learned per (arch, objective, layers, seed): the most hops (l - 2) at which r2 is
    learned (accuracy >= ``LEARNED``), and how the first unlearned path length ended: a plateau
    (r2's loss stopped falling: a limit of this model) or the cap (a limit of the budget). Where
    the fewest hops tried is above zero and none was learned, that is all it says: "fewer than"
    the fewest tried."""
    frame = depth_frame(results, job)
    frame = frame.assign(hops=frame["path_length"] - 2)
    rows = []
    for (arch, objective, layers, seed), group in frame.groupby(["arch", "objective", "layers", "seed"], sort=True):
        most, first_fail = _hops_of(group)
        rows.append({
            "model": model_label(arch, objective), "layers": layers, "seed": seed,
            "hops learned": _hops_text(most, int(group["hops"].min())),
            "hops tried": f"{int(group['hops'].min())}-{int(group['hops'].max())}",
            "next hop: r2, how training ended": "all tried learned" if first_fail is None else
            f"{num(first_fail['r2'])} at {int(first_fail['hops'])} hops, " + (
                f"{first_fail['stopped_by']} at {int(first_fail['train_steps']):,} steps" if isinstance(first_fail.get("stopped_by"), str) else "a fixed budget"),
        })
    return markdown(pd.DataFrame(rows))


def depth_over_seeds(results: Results, job: str) -> str:
    """The depth grid over seeds, one row per (arch, objective, layers): r2 accuracy at each
    path length as mean ± sd, the hops learned by each seed, and how each seed's first
    unlearned path length ended (see ``depth_hops``)."""
    frame = depth_frame(results, job)
    frame = frame.assign(hops=frame["path_length"] - 2)
    rows = []
    for (arch, objective, layers), group in frame.groupby(["arch", "objective", "layers"], sort=True):
        row = {"model": model_label(arch, objective), "layers": layers}
        for length, cell in group.groupby("path_length", sort=True):
            row[f"r2 at l = {length} ({length - 2} hops)"] = spread(cell["r2"])
        per_seed = [(*_hops_of(runs), int(runs["hops"].min())) for _, runs in group.groupby("seed", sort=True)]
        row["hops learned, per seed"] = " / ".join(_hops_text(most, fewest) for most, _, fewest in per_seed)
        row["next hop ended, per seed"] = " / ".join(_ended(fail) or "-" for _, fail, _ in per_seed)
        rows.append(row)
    return markdown(pd.DataFrame(rows))


for _job in ("depth_first_hops", "depth_first_hops_mamba", "depth_deeper_gpt", "depth_long_mamba", "depth_deeper_mamba_3", "depth_deeper_mamba_4",
             "depth_long_mamba_3", "depth_lr_mamba", "depth_lr_mamba_l5", "depth_lr_gpt_half", "depth_lr_gpt_double"):
    BLOCKS[f"{_job}.hops"] = (lambda job: lambda results: depth_hops(results, job))(_job)
    BLOCKS[f"{_job}.seeds"] = (lambda job: lambda results: depth_over_seeds(results, job))(_job)
    BLOCKS[f"{_job}.table"] = (lambda job: lambda results: depth_table(results, job))(_job)

# The Mamba at half its preset's peak rate (studies/depth_lr.toml), l = 4 and 5 (two and three hops).
DEPTH_HALF_RATE_MAMBA = ("depth_lr_mamba_1", "depth_lr_mamba_2", "depth_lr_mamba", "depth_lr_mamba_l5")

# Every published part of the depth grid; a later job's run of a cell (arch, objective, layers,
# path length, seed) replaces an earlier job's: depth_long_mamba re-runs one cell with a higher cap.
# depth_long_mamba_3 (one seed of the 3-layer cell, 12,000-step cap) is not counted: its longer
# schedule kept the learning rate high long enough for a loss spike, so it measures the schedule's
# stability, not the budget (the findings show it beside the grid); the cells re-run at other
# learning rates (depth_lr_*) are not counted either: another rate, another cell (``depth_by_lr``
# sets them side by side, ``hops_at_best_rate`` counts the best rate per seed).
DEPTH_JOBS = ("depth_first_hops", "depth_first_hops_mamba", "depth_deeper_gpt", "depth_long_mamba", "depth_deeper_mamba_3", "depth_deeper_mamba_4")


def hops_by_layers(results: Results, jobs: tuple[str, ...] = DEPTH_JOBS) -> pd.DataFrame:
    """Hops learned per (arch, objective, layers, seed) over the depth jobs published so far,
    one row each: ``hops`` (the most hops with r2 >= ``LEARNED``; -1: not even the copy),
    ``hops_tried`` (the most tried), and ``next_hop_ended`` (how the first unlearned path length
    ended: "plateau", "cap" or "fixed budget"; "" when every length tried was learned). Where
    two jobs ran the same cell and seed, the later job's run counts (``DEPTH_JOBS``' order).
    Raises ``FileNotFoundError`` when no depth job is published."""
    frames = []
    for job in jobs:
        try:
            frames.append(depth_frame(results, job))
        except FileNotFoundError:
            continue
    if not frames:
        raise FileNotFoundError(f"results/{{{','.join(jobs)}}}: none published; the jobs that write them: "
                                + "; ".join(JOBS.get(job, f"{job}: unknown job") for job in jobs))
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop_duplicates(["arch", "objective", "layers", "path_length", "seed"], keep="last")
    frame = frame.assign(hops=frame["path_length"] - 2)
    rows = []
    for (arch, objective, layers, seed), group in frame.groupby(["arch", "objective", "layers", "seed"], sort=True):
        most, first_fail = _hops_of(group)
        rows.append({"arch": arch, "objective": objective, "layers": int(layers), "seed": int(seed), "hops": -1 if most is None else most,
                     "hops_tried": int(group["hops"].max()), "next_hop_ended": _ended(first_fail)})
    return pd.DataFrame(rows)


# The depth cells re-run at other peak learning rates than the arch's preset (the grid's): the
# Mamba at half its 5e-3 (l = 4 and 5), the GPT at half and twice its 1e-3 (l = 2 and 3).
DEPTH_RATE_JOBS = (*DEPTH_HALF_RATE_MAMBA, "depth_lr_gpt_half", "depth_lr_gpt_double")


def hops_at_best_rate(results: Results, grid: tuple[str, ...] = DEPTH_JOBS, rates: tuple[str, ...] = DEPTH_RATE_JOBS) -> pd.DataFrame:
    """``hops_by_layers``' rows with every learning rate tried counted: per (arch, objective,
    layers, seed), the rate at which the seed learned the most hops (``lr``), with the hops tried
    at that rate (``hops_from``-``hops_tried``), how its next hop ended there, and every rate tried
    for the arch (``rates``, highest first). A rate that tried only longer paths and learned none
    of them says nothing about the shorter ones: it is kept only for a seed with nothing else
    (``hops`` -1, ``hops_from`` above 0). On a tie in hops: the rate that tried more, then the
    grid's, then the higher rate. One success is what "can this depth learn k hops" asks; how
    many seeds each rate teaches stays each rate's own count (``depth_lr_learned``)."""
    frames = [depth_frame(results, job).assign(grid=job in grid) for job in grid + rates if results.path(job, "study.csv").exists()]
    if not frames:
        raise FileNotFoundError(f"results/{{{','.join(grid + rates)}}}: none published; the jobs that write them: "
                                + "; ".join(JOBS.get(job, f"{job}: unknown job") for job in grid + rates))
    frame = with_peak_lr(pd.concat(frames, ignore_index=True))
    frame = frame.drop_duplicates(["arch", "objective", "layers", "path_length", "seed", "lr"], keep="last")
    frame = frame.assign(hops=frame["path_length"] - 2)
    rows = []
    for (arch, objective, layers, seed, lr), group in frame.groupby(["arch", "objective", "layers", "seed", "lr"], sort=True):
        most, first_fail = _hops_of(group)
        fewest = int(group["hops"].min())
        rows.append({"arch": arch, "objective": objective, "layers": int(layers), "seed": int(seed), "lr": lr,
                     "informative": most is not None or fewest == 0, "grid": bool(group["grid"].any()),
                     "hops": -1 if most is None else most, "hops_from": fewest, "hops_tried": int(group["hops"].max()),
                     "next_hop_ended": _ended(first_fail)})
    best = pd.DataFrame(rows).sort_values(["informative", "hops", "hops_tried", "grid", "lr"], ascending=False, kind="stable")
    best = best.drop_duplicates(["arch", "objective", "layers", "seed"]).sort_values(["arch", "objective", "layers", "seed"])
    from workbench.study.figures import lr_text

    tried = {arch: ", ".join(lr_text(lr) for lr in sorted(group["lr"].unique(), reverse=True)) for arch, group in frame.groupby("arch")}
    return best.drop(columns=["informative", "grid"]).assign(rates=best["arch"].map(tried)).reset_index(drop=True)


@block("depth.hops_at_best_rate")
def hops_at_best_rate_table(results: Results) -> str:
    """The depth question with every learning rate tried: per arch and layer count, the most
    hops each seed learned at any rate, the rate, the hops tried there and how the next ended."""
    from workbench.study.figures import lr_text

    frame = hops_at_best_rate(results)
    rows = []
    for (arch, objective, layers), group in frame.groupby(["arch", "objective", "layers"], sort=True):
        rows.append({"model": model_label(arch, objective), "layers": layers, "rates tried": group["rates"].iloc[0],
                     "hops learned, per seed": " / ".join(_hops_text(h, f) for h, f in zip(group["hops"], group["hops_from"])),
                     "at lr, per seed": " / ".join(lr_text(lr) for lr in group["lr"]),
                     "hops tried there, per seed": " / ".join(f"{f}-{t}" for f, t in zip(group["hops_from"], group["hops_tried"])),
                     "next hop ended, per seed": " / ".join(e or "-" for e in group["next_hop_ended"])})
    return markdown(pd.DataFrame(rows))


@block("depth.hops_by_layers")
def hops_by_layers_table(results: Results) -> str:
    """The depth question in one table: per arch and layer count, the hops each seed learned
    and how its next hop ended, over every depth job published."""
    frame = hops_by_layers(results)
    rows = []
    for (arch, objective, layers), group in frame.groupby(["arch", "objective", "layers"], sort=True):
        group = group.sort_values("seed")
        rows.append({"model": model_label(arch, objective), "layers": layers, "hops tried": f"0-{int(group['hops_tried'].max())}",
                     "hops learned, per seed": " / ".join("none" if h < 0 else str(h) for h in group["hops"]),
                     "next hop ended, per seed": " / ".join(e or "-" for e in group["next_hop_ended"])})
    return markdown(pd.DataFrame(rows))


@block("checkpoints.manifest")
def shipped_manifest(results: Results) -> str:
    """The shipped reference checkpoints (``checkpoints/manifest.csv`` of this checkout)."""
    from workbench.shipped import manifest, store

    table = manifest(store())
    trained = table[table["untrained_twin_of"].isna()]
    rows = [{
        "name": row["name"], "graph": row["graph"], "layers": row["n_layers"], "steps": row["step"],
        "trained by (run)": f"`{re.sub(r' --(no-progress|out [^ ]+)', '', row['command'])}` ({row['run']})",  # where its runs folder was: not part of what trained it
        "training": duration(row["train_seconds"]), "scored on": "the paper's test file" if row["reference_file"].endswith(".txt") else "held-out stream",
        "r2 tf / greedy": f"{num(row['r2_tf'])} / {num(row['r2_greedy'])}",
        "path greedy": num(row["path_greedy"]), "untrained twin: r2 tf": num(table.set_index("name")["r2_tf"].get(row["name"] + "-untrained")),
    } for _, row in trained.iterrows()]
    return markdown(pd.DataFrame(rows)) + ("\n\n20,000 graphs each: the paper's test file of the graph, or where it has none, the run's "
                                           "held-out stream; sha256 of every file in `checkpoints/manifest.csv`.")


def seeds_above(results: Results, job: str | tuple[str, ...], objective: str, metric: str, position: str, threshold: float) -> str:
    """How many seeds' best value of ``metric`` at ``position`` (any hook) exceeds ``threshold``,
    and the per-seed values: a bimodal outcome is said as a count, not hidden in a mean."""
    values = study_value(results, job, objective, metric, position, True)
    return f"{int((values > threshold).sum())} of {len(values)} seeds ({' / '.join(pct(v) for v in values)})"


BLOCKS["mamba_solvers.reverse.seeds_reading_eq"] = lambda results: seeds_above(results, "mamba_solvers", "reverse", "patching_recovered", "eq", 0.5)
BLOCKS["deep_solvers.next_token.seeds_solved"] = lambda results: seeds_above(results, "deep_solvers", "next_token", "tf_accuracy", "r2", 0.9)
for _objective in ("future_bow", "bst", "mtp"):
    BLOCKS[f"deep_solvers_mamba_g24.{_objective}.seeds_solved"] = (
        lambda o: lambda results: seeds_above(results, MAMBA_G24, o, "tf_accuracy", "r2", 0.9))(_objective)


def still_falling(results: Results, job: str | tuple[str, ...], window: int = 1_000, solved: float = 0.9, overrides: str | None = None) -> str:
    """For each run that ended below ``solved`` on r2: its held-out r2 loss over the last
    ``window`` steps and the relative fall (``curves.csv``), the test of a budget limit. Runs are
    named by seed, after their objective and the override items they do not share with every
    other run where the job has several ("model.n_layers=3 seed 0"). ``overrides``: only the
    runs of that variant (its --set items, space-separated, as in study.csv)."""
    curves = results.table(job, "curves")
    if overrides is not None:
        curves = curves[curves["overrides"].fillna("") == overrides]
    loss = curves[(curves["split"] == "test") & (curves["metric"] == "tf_loss") & (curves["position"] == "r2")]
    accuracy = curves[(curves["split"] == "test") & (curves["metric"] == "tf_accuracy") & (curves["position"] == "r2")]
    parts, several = [], loss["objective"].nunique() > 1
    run_items = {run: (o if isinstance(o, str) else "").split() for run, o in zip(loss["run"], loss["overrides"] if "overrides" in loss else [""] * len(loss))}
    shared = set.intersection(*map(set, run_items.values())) if run_items else set()
    for run, group in loss.groupby("run", sort=False):
        last = group["step"].max()
        final = accuracy[(accuracy["run"] == run) & (accuracy["step"] == last)]["value"]
        by_step = group.set_index("step")["value"]
        if final.empty or final.iloc[0] >= solved or last - window not in by_step:
            continue
        before, now = by_step[last - window], by_step[last]
        own = " ".join(item for item in run_items[run] if item not in shared)
        name = (f"{group['objective'].iloc[0]} " if several else "") + (f"{own} " if own else "") + f"seed {group['seed'].iloc[0]}"
        fall = (before - now) / before
        parts.append(f"{name}: {num(before)} -> {num(now)} ({pct(abs(fall))} {'down' if fall >= 0 else 'up'})")
    return "; ".join(parts) if parts else "every seed solved"


BLOCKS["deep_solvers.still_falling"] = lambda results: still_falling(results, "deep_solvers")
BLOCKS["deep_solvers_mamba_g25.still_falling"] = lambda results: still_falling(results, "deep_solvers_mamba_g25")
BLOCKS["deep_solvers_mamba_g25_remedies.still_falling"] = lambda results: still_falling(results, "deep_solvers_mamba_g25_remedies")
BLOCKS["deep_solvers_mamba_g24.still_falling"] = lambda results: still_falling(results, MAMBA_G24)
BLOCKS["depth_lr_mamba_l5.still_falling"] = lambda results: still_falling(results, "depth_lr_mamba_l5")
BLOCKS["deep_solvers_gpt_mtp_g25.still_falling"] = lambda results: still_falling(results, "deep_solvers_gpt_mtp_g25")
for _name, _variant in (("structured", "train.structured_samples=true"), ("long", "train.steps=6000"),
                       ("long_structured", "train.structured_samples=true train.steps=6000"), ("four_layers", "model.n_layers=4 train.steps=3000")):
    BLOCKS[f"solvers_controls.{_name}.still_falling"] = (lambda v: lambda results: still_falling(results, "solvers_controls", overrides=v))(_variant)


def later_tokens_lowest(results: Results, job: str) -> str:
    """The lowest held-out teacher-forced accuracy on r3..rl over every run of ``job``: the
    later tokens a failing run did learn (the Clever Hans cheat), as one number."""
    frame = _study(results, job)
    later = frame[(frame["metric"] == "tf_accuracy") & frame["position"].str.fullmatch(r"r([3-9]|\d\d)")]
    if later.empty:
        raise ValueError(f"results/{job}: no tf_accuracy rows for r3 on")
    return num(later["value"].min())


BLOCKS["deep_solvers_mamba_g25_remedies.later_tokens_lowest"] = lambda results: later_tokens_lowest(results, "deep_solvers_mamba_g25_remedies")


def eq_state_patching_max(results: Results, job: str | tuple[str, ...], objective: str | None = None) -> str:
    """The largest share of r2's logit difference restored by patching a Mamba's SSM state at
    '=' (any layer, any seed of ``objective``, or of every objective): the one place a decision
    made at '=' could travel to the r1 slot other than the convolution. The residual stream at
    '=' is no such test: after the last block it reaches no later slot (patching it restores
    nothing by construction), and after block 0 it carries the goal token itself, which moves
    r2 trivially."""
    frame = _study(results, job)
    frame = frame[frame["objective"] == objective] if objective else frame
    rows = frame[(frame["metric"] == "patching_recovered") & (frame["position"] == "eq") & frame["hook"].str.endswith("hook_ssm_state")]
    if rows.empty:
        raise ValueError(f"results/{job}: no SSM state patching at '='" + (f" for {objective}" if objective else ""))
    return pct(rows["value"].max())


def best_site_max(results: Results, job: str | tuple[str, ...], objective: str) -> str:
    """The largest share of r2's logit difference that any patched site before the last
    block's output restores, over ``objective``'s seeds (``per_seed``'s best site): small, it
    says the goal reaches the last block by a position the study did not patch."""
    from workbench.study.figures import per_seed

    seeds = per_seed(_study(results, job))
    recovered = seeds[seeds["objective"] == objective]["patching_recovered"].dropna()
    if recovered.empty:
        raise ValueError(f"results/{job}: no patching recovery for {objective}")
    return pct(recovered.max())


BLOCKS["remedies_mamba_g23.mtp.eq_state_max"] = lambda results: eq_state_patching_max(results, "remedies_mamba_g23", "mtp")
BLOCKS["remedies_mamba_g23.future_bow.best_site_max"] = lambda results: best_site_max(results, "remedies_mamba_g23", "future_bow")
for _objective in ("future_bow", "bst", "mtp"):
    BLOCKS[f"deep_solvers_mamba_g24.{_objective}.eq_state_max"] = (
        lambda o: lambda results: eq_state_patching_max(results, MAMBA_G24, o))(_objective)


def _at_hook(results: Results, job: str | tuple[str, ...], metric: str, position: str, hook: str, objective: str | None = None,
             graph: str | None = None) -> pd.DataFrame:
    """The rows of one hook's ``metric`` at ``position`` (of ``objective``'s runs on ``graph``, or every run's)."""
    frame = _study(results, job)
    rows = frame[(frame["metric"] == metric) & (frame["position"] == position) & (frame["hook"] == hook)
                 & ((frame["objective"] == objective) if objective else True) & ((frame["graph"] == graph) if graph else True)]
    if rows.empty:
        raise ValueError(f"results/{job}: no {metric} at {position}, {hook}" + (f" for {objective}" if objective else "")
                         + (f" on {graph}" if graph else ""))
    return rows


def per_seed_at(results: Results, job: str | tuple[str, ...], objective: str, metric: str, position: str, hook: str,
                graph: str | None = None) -> str:
    """One hook's value of ``metric`` at ``position`` in each seed of ``objective`` (on ``graph``), as
    percentages (a seed-dependent mechanism is said seed by seed, not averaged away)."""
    rows = _at_hook(results, job, metric, position, hook, objective, graph)
    if rows["seed"].duplicated().any():
        raise ValueError(f"results/{job}: several {objective} runs per seed at {position}, {hook}; name the graph")
    return " / ".join(pct(v) for v in rows.sort_values("seed")["value"])


# The 4-layer GPT under mtp, one graph at a time: tag -> graph
GPT_MTP_GRAPHS = {"g24": "G(2,4,50)", "g25": "G(2,5,50)"}
# What '=' holds after block 1 in the 4-layer GPT under mtp, seed by seed
for _tag, _graph in GPT_MTP_GRAPHS.items():
    for _name, _metric in (("eq_after_block1", "patching_recovered"), ("goal_eq_block1", "probe_goal"),
                           ("node_r2_eq_block1", "probe_node_r2"), ("node_r2_eq_block1_untrained", "probe_node_r2_untrained")):
        BLOCKS[f"deep_solvers_gpt.{_tag}.mtp.{_name}"] = (
            lambda m, g: lambda results: per_seed_at(results, GPT_SOLVERS, "mtp", m, "eq", "blocks.1.hook_resid_post", g))(_metric, _graph)

# What mtp's extra heads predict before the first answer token, seed by seed, beside the answer's
# own r2 (the evaluation's head{o}_accuracy): head 2's guess at r2 and head 3's at r3 are read at '='
# (the 2-layer Mamba of G(2,4,50) and the 4-layer GPTs of G(2,4,50) and G(2,5,50))
MTP_HEADS = {"head2_r2": ("head2_accuracy", "r2"), "head3_r3": ("head3_accuracy", "r3"), "answer_r2": ("tf_accuracy", "r2")}
for _prefix, _jobs, _graph in (("deep_solvers_mamba_g24", MAMBA_G24, None),
                               *((f"deep_solvers_gpt.{tag}", GPT_SOLVERS, graph) for tag, graph in GPT_MTP_GRAPHS.items())):
    for _name, (_metric, _position) in MTP_HEADS.items():
        BLOCKS[f"{_prefix}.mtp.{_name}"] = (
            lambda j, m, p, g: lambda results: per_seed_at(results, j, "mtp", m, p, "", g))(_jobs, _metric, _position, _graph)


def _slot_name(offset: int) -> str:
    """The input slot ``offset`` answer slots after '=': k > 0 the slot of rk, 0 '=', -1 the goal
    token (the prompt ends "source,goal ="), further back counted in slots before '='."""
    if offset > 0:
        return f"r{offset}"
    return {-1: "the goal token", 0: "="}.get(offset, f"{-offset} slots before =")


def mtp_hops_back(results: Results, job: str | tuple[str, ...], arch: str = "gpt", solved: float = 0.9) -> str:
    """What mtp's predictions name up to the slot that emits r2, by how many hops back from the
    goal the named node is: the answer's r2 at the r1 slot, and each extra head o's guess at
    answer token e, read o - 1 slots before the slot that emits it (``head{o}_accuracy``), for
    every inner node (neither the source nor the goal: those are copies) whose guess is read no
    later than the r1 slot, that is, before the first decision is given as input. Per seed, one
    row per (graph, node, head), with the first evaluation at which each seed's guess reached
    ``solved`` (``curves.csv``): whether the heads learn the arm back from the goal one hop at
    a time, and how far back each seed got."""
    frame = _study(results, job)
    frame = frame[(frame["arch"] == arch) & (frame["objective"] == "mtp") & (frame["hook"] == "")]
    if frame.empty:
        raise ValueError(f"results/{job}: no {arch} mtp runs")
    curves = results.table(job, "curves")
    curves = curves[(curves["split"] == "test") & (curves["arch"] == arch) & (curves["objective"] == "mtp")]
    rows = []
    for graph, runs in frame.groupby("graph", sort=False):
        length = graph_spec(graph).path_length
        heads = sorted(int(m[len("head"):-len("_accuracy")]) for m in runs["metric"].unique() if re.fullmatch(r"head\d+_accuracy", m))
        for answer in range(2, length):
            for head in (1, *heads):
                offset = answer - head
                if offset > 1:
                    continue
                metric = "tf_accuracy" if head == 1 else f"head{head}_accuracy"
                values = runs[(runs["metric"] == metric) & (runs["position"] == f"r{answer}")].sort_values("seed")["value"]
                if values.empty:
                    raise ValueError(f"results/{job}: no {metric} at r{answer} for mtp on {graph}")
                curve = curves[(curves["metric"] == metric) & (curves["position"] == f"r{answer}") & (curves["graph"] == graph)]
                first = first_steps(curve, solved).values()
                rows.append({"graph": graph, "hops back from the goal": length - answer, "node": f"r{answer}",
                             "named by": "the answer" if head == 1 else f"head {head}", "read at": _slot_name(offset),
                             "accuracy per seed": " / ".join(pct(v) for v in values),
                             f"first at {solved:.0%}, step": " / ".join("never" if step is None else f"{step:,}" for step in first)})
    return markdown(pd.DataFrame(rows).sort_values(["graph", "hops back from the goal"], kind="stable"))


BLOCKS["deep_solvers_gpt.mtp_hops_back"] = lambda results: mtp_hops_back(results, GPT_SOLVERS)


# What the 4-layer GPT's trunk holds of r2's node at '=' (what head 2 reads) and at the r1 slot
# (what the answer reads), after block 2 and after the last block
MTP_TRUNK = {"node_r2_eq_last": ("probe_node_r2", "eq", 3), "node_r2_eq_last_untrained": ("probe_node_r2_untrained", "eq", 3),
             "node_r2_eq_block2": ("probe_node_r2", "eq", 2), "node_r2_eq_block2_untrained": ("probe_node_r2_untrained", "eq", 2),
             "eq_after_block2": ("patching_recovered", "eq", 2), "node_r2_r1_last": ("probe_node_r2", "r1", 3)}
for _tag, _graph in GPT_MTP_GRAPHS.items():
    for _name, (_metric, _position, _block) in MTP_TRUNK.items():
        BLOCKS[f"deep_solvers_gpt.{_tag}.mtp.{_name}"] = (
            lambda m, p, b, g: lambda results: per_seed_at(results, GPT_SOLVERS, "mtp", m, p, f"blocks.{b}.hook_resid_post", g))(
                _metric, _position, _block, _graph)

# What '=' holds and hands on in the 2-block Mamba remedies, seed by seed: name -> (metric, hook)
EQ_PER_SEED = {"eq_after_block0": ("patching_recovered", "blocks.0.hook_resid_post"),
               "node_r2_eq_block0": ("probe_node_r2", "blocks.0.hook_resid_post"),
               "node_r2_eq_last": ("probe_node_r2", "blocks.1.hook_resid_post"),
               "goal_eq_block0_untrained": ("probe_goal_untrained", "blocks.0.hook_resid_post")}
BLOCKS["deep_solvers_mamba_g24.node_r2_eq_block0_untrained_max"] = lambda results: pct(
    _at_hook(results, MAMBA_G24, "probe_node_r2_untrained", "eq", "blocks.0.hook_resid_post")["value"].max())
for _objective in ("future_bow", "bst", "mtp"):
    for _name, (_metric, _hook) in EQ_PER_SEED.items():
        BLOCKS[f"deep_solvers_mamba_g24.{_objective}.{_name}"] = (
            lambda o, m, h: lambda results: per_seed_at(results, MAMBA_G24, o, m, "eq", h))(_objective, _metric, _hook)
