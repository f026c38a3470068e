"""The report: one self-contained HTML page built only from an experiment's saved tables and
figures (``results.csv``, ``probes/``, ``analyses/``, the checkpoints' ``config.json``).

The page opens with one summary table (one row per model: r2 and path accuracy, cheat-test
follow rate, best goal-arm probe with its controls, goal node at ``=``, patching recovery)
and one figure; the per-model findings, the long tables and the per-target figures are folded
into collapsible ``<details>`` sections; a last section links the study pages found beside the
experiment (``../studies/*/report.html``) with their figures. Figures are embedded as base64 PNG, so the page can
be mailed or archived alone; the CSV and PNG files stay beside it. Every number is computed
from the tables here.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import pandas as pd

from workbench.analyses.patching import best_site
from workbench.pages import STYLE, details, img, table_html
from workbench.files import atomic_write_text

def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def setup_section(run_dir: Path) -> str:
    rows, task = [], {}
    for config_file in sorted((run_dir / "checkpoints").glob("*/config.json")):
        payload = json.loads(config_file.read_text())
        run, task = payload["run"], payload["run"]["task"]  # one task for every run of an experiment
        model = ", ".join(f"{k}={v}" for k, v in run["model"].items() if k in ("n_layers", "d_model", "n_heads", "d_state", "expand"))
        train = run["train"]
        rows.append({
            "run": config_file.parent.name, "arch": run["arch"], "objective": run["objective"], "preset": run["preset"], "model": model,
            "steps": payload["step"], "batch": train["batch_size"], "lr": train["lr"], "seed": train["seed"],
        })
    graph = f"G({task.get('degree')},{task.get('path_length')},{task.get('num_nodes')})" if task else "?"
    text = (
        f"<p>Path-star graphs {graph}: a source with {task.get('degree')} arms of {task.get('path_length')} nodes; "
        f"{task.get('num_train')} generated training graphs, {task.get('num_test')} held-out graphs from another seed. "
        "Answer positions are r1..rl; r1 is the source (copied), <b>r2 is the first decision</b>, the only token that needs planning. "
        "<code>eq</code> is the '=' token, whose output is r1; position <code>r1</code> is the answer slot whose output is r2.</p>"
    )
    return text + (table_html(pd.DataFrame(rows), index=False) if rows else "")


def accuracy_section(results: pd.DataFrame) -> str:
    table = results[results["metric"].isin(["tf_accuracy", "greedy_accuracy", "tf_loss"])].pivot_table(
        index=["arch", "objective", "seed", "metric"], columns="position", values="value", sort=False
    )
    table = table[[c for c in table.columns if c != "path"] + (["path"] if "path" in table.columns else [])]
    return f"<p>On {int(results['n_graphs'].iloc[0])} held-out graphs; teacher-forced (tf) accuracy uses each objective's own training inputs, greedy decodes freely.</p>" + table_html(table)


def first_seeds(results: pd.DataFrame) -> pd.Series:
    """{(arch, objective): its first seed}: the run every single-seed number is read from."""
    return results.groupby(["arch", "objective"], sort=False)["seed"].min()


def values_by_seed(results: pd.DataFrame) -> pd.Series:
    """results' values indexed (arch, objective, metric, position, seed): one key without the
    seed gives the model's values over its seeds."""
    return results.set_index(["arch", "objective", "metric", "position", "seed"])["value"].sort_index()


def over_seeds(values: pd.Series, digits: int = 3, where: str = "") -> str:
    """One number per seed -> 'mean (min-max, n seeds; where)', or 'number (where)' for one seed."""
    values = values.dropna()
    if not len(values):
        return "n/a"
    spread = [f"{values.min():.{digits}f}-{values.max():.{digits}f}, {len(values)} seeds"] if len(values) > 1 else []
    notes = "; ".join(spread + ([where] if where else []))
    return f"{values.mean():.{digits}f}" + (f" ({notes})" if notes else "")


def goal_at_eq_per_seed(probes: pd.DataFrame | None, arch: str, objective: str) -> pd.DataFrame:
    """Per seed, the best hook's probe for the goal node at '=' (its accuracy and untrained model's)."""
    if probes is None:
        return pd.DataFrame()
    rows = probes[(probes["arch"] == arch) & (probes["objective"] == objective) & (probes["target"] == "goal") & (probes["position"] == "eq")]
    return rows.loc[rows.groupby("seed")["accuracy"].idxmax()].set_index("seed") if len(rows) else rows


def findings(results: pd.DataFrame, analyses: dict[str, pd.DataFrame | None], probes: pd.DataFrame | None, degree: int) -> str:
    """Sentences computed from the tables: what this run shows, whatever it shows. Each model's
    numbers are its first seed's; a model trained with more seeds also gets them side by side."""
    cheat, lookup, patched = (analyses.get(k) for k in ("cheat_test", "edge_lookup", "patching"))
    items = []
    seeds, value = first_seeds(results), values_by_seed(results)
    for arch, objective in results[["arch", "objective"]].drop_duplicates().itertuples(index=False):
        seed = seeds[(arch, objective)]

        def v(metric: str, position: str) -> float:
            return value.get((arch, objective, metric, position, seed), float("nan"))

        def mine(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[(frame["arch"] == arch) & (frame["objective"] == objective) & (frame["seed"] == seed)]

        later = [v("tf_accuracy", f"r{k}") for k in range(3, int(results["path_length"].iloc[0]) + 1)]
        text = (
            f"<b>{arch} / {objective}</b>: first decision r2 {v('tf_accuracy', 'r2'):.1%} teacher-forced (chance {1 / degree:.0%}), "
            f"later positions r3..rl {min(later):.1%}&ndash;{max(later):.1%}, greedy full path {v('greedy_accuracy', 'path'):.1%}."
        )
        if cheat is not None:
            follow = mine(cheat)
            follow = follow[follow["outcome"] == "follow"]
            rates = ", ".join(f"{p} {r:.0%}" for p, r in zip(follow["position"], follow["rate"]))
            text += f" With a wrong arm fed, it follows that arm at {rates}." if len(follow) else " The cheat test does not apply (no answer tokens are fed)."
        if lookup is not None and len(mine(lookup)):
            # Per position (the positions differ between objectives and path lengths): the head
            # with the most attention on the edge that the position's token is looked up from.
            mass = mine(lookup).groupby(["position", "layer", "head"])["mass"].sum()
            best = mass.groupby(level="position").idxmax()
            heads = ", ".join(f"{position} layer {layer} head {head} {mass[(position, layer, head)]:.0%}" for position, (_, layer, head) in best.items())
            text += f" Its strongest edge-lookup head per predicted position (attention on the looked-up edge): {heads}."
        if probes is not None:
            rows = mine(probes)
            arm, goal = rows[rows["target"] == "arm"], rows[(rows["target"] == "goal") & (rows["position"] == "eq")]
            if len(arm):
                best = arm.loc[arm["accuracy"].idxmax()]
                text += (f" Best linear probe for the goal arm: {best['accuracy']:.1%} ({best['position']}, {best['hook']}; "
                         f"untrained model {best['random_init_accuracy']:.1%}).")
            if len(goal):
                text += f" The goal node is decodable at '=' with at most {goal['accuracy'].max():.1%}."
        if patched is not None and len(mine(patched)):
            rows = mine(patched)
            first = rows.iloc[0]
            best = best_site(rows)
            if best is not None:
                text += (f" Goal patching: r2's logit difference is {first['ld_clean']:.2f} clean vs {first['ld_corrupted']:.2f} with the goal moved; "
                         f"patching {best['hook']} at {best['position']} recovers {best['recovered']:.0%} of it (the best site before the last block's output, "
                         "which restores all of it at the slot that emits r2 by construction).")
            else:
                text += f" Goal patching: moving the goal barely changes r2's logits (logit difference {first['ld_clean']:.2f} vs {first['ld_corrupted']:.2f}): its r2 does not use the goal."
        r2 = value[(arch, objective, "tf_accuracy", "r2")]  # one per seed
        if len(r2) > 1:
            text += f" Over its seeds {', '.join(map(str, r2.index))}: r2 {' / '.join(f'{a:.1%}' for a in r2)} teacher-forced"
            goal = goal_at_eq_per_seed(probes, arch, objective)
            if len(goal) > 1:
                text += (f"; the goal node at '=' (best hook) {' / '.join(f'{a:.1%}' for a in goal['accuracy'])}, "
                         f"untrained {' / '.join(f'{a:.1%}' for a in goal['random_init_accuracy'])}")
            text += "."
        items.append(text)
    return '<ul class="findings">' + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


SUMMARY_COLUMNS = (
    "r2 accuracy (tf)", "path accuracy (greedy)", "cheat test: follows wrong arm", "best goal-arm probe", "its control task",
    "its untrained model", "goal node at '='", "patching recovery",
)


def summary_table(results: pd.DataFrame, analyses: dict[str, pd.DataFrame | None], probes: pd.DataFrame | None) -> pd.DataFrame:
    """One row per model of ``results``: the headline numbers, each from its saved table; r2
    and path accuracy and the goal node at '=' over every seed of the model (``over_seeds``),
    the rest from its first seed. Cheat test: the mean follow rate over the positions fed a wrong arm, leaving
    out the copies r1 and rl (n/a where no answer tokens are fed, or, on G(d,3), where r2 is
    the only decision and no token after it is one). Best goal-arm probe: the most accurate (hook, position),
    with the control task and the untrained model at that probe. Goal node at '=': the best
    hook. Patching recovery: the largest share of r2's logit difference one clean activation
    restores before the last block's output (``patching.best_site``; blank where moving the goal
    does not change r2)."""
    cheat, patched = analyses.get("cheat_test"), analyses.get("patching")
    seeds, value = first_seeds(results), values_by_seed(results)
    rows = []
    for arch, objective in results[["arch", "objective"]].drop_duplicates().itertuples(index=False):
        seed = seeds[(arch, objective)]

        def mine(frame: pd.DataFrame | None) -> pd.DataFrame:
            if frame is None:
                return pd.DataFrame()
            return frame[(frame["arch"] == arch) & (frame["objective"] == objective) & (frame["seed"] == seed)]

        row: dict = {"model": f"{arch} / {objective}", "r2 accuracy (tf)": over_seeds(value[(arch, objective, "tf_accuracy", "r2")]),
                     "path accuracy (greedy)": over_seeds(value[(arch, objective, "greedy_accuracy", "path")])}
        follow = mine(cheat)
        follow = follow[follow["outcome"] == "follow"] if len(follow) else follow
        if len(follow):  # only decisions: r1 (the source) and rl (the goal) are copies from the prompt
            follow = follow[~follow["position"].isin(["r1", f"r{int(results['path_length'].iloc[0])}"])]
        row["cheat test: follows wrong arm"] = f"{follow['rate'].mean():.3f}" if len(follow) else "n/a"
        arm = mine(probes)
        arm = arm[arm["target"] == "arm"] if len(arm) else arm
        if len(arm):
            best = arm.loc[arm["accuracy"].idxmax()]
            row["best goal-arm probe"] = f"{best['accuracy']:.3f} ({best['site']} L{best['layer']} @ {best['position']})"
            row["its control task"], row["its untrained model"] = best["control_accuracy"], best["random_init_accuracy"]
        goal = goal_at_eq_per_seed(probes, arch, objective)
        if len(goal):
            best = goal.loc[seed] if seed in goal.index else goal.iloc[0]
            row["goal node at '='"] = over_seeds(goal["accuracy"], where=f"{best['site']} L{best['layer']}")
        patch = mine(patched)
        if len(patch):
            best = best_site(patch)
            if best is not None:
                row["patching recovery"] = f"{best['recovered']:.2f} ({best['site']} L{best['layer']} @ {best['position']})"
            else:
                row["patching recovery"] = "r2 ignores the goal"
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=["model", *SUMMARY_COLUMNS])


def cka_summary(cka_frame: pd.DataFrame) -> pd.DataFrame:
    """Linear CKA of the two models' last layers at '=', one row per pair."""
    final = cka_frame[(cka_frame["layer_a"] == cka_frame["layer_a"].max()) & (cka_frame["layer_b"] == cka_frame["layer_a"])]
    return final[["kind", "model_a", "model_b", "cka"]].set_index(["kind", "model_a", "model_b"])


def probe_summary(probes: pd.DataFrame) -> str:
    best = probes.loc[probes.groupby(["arch", "objective", "position", "target"], sort=False)["accuracy"].idxmax()].copy()
    best["95% CI"] = [f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(best["ci_low"], best["ci_high"])]
    best = best.rename(columns={"control_accuracy": "control task", "random_init_accuracy": "untrained"})
    columns = ["arch", "objective", "position", "target", "hook", "accuracy", "95% CI", "control task", "selectivity", "untrained", "chance"]
    table = best[columns].set_index(["arch", "objective", "position", "target"])
    return "<p>Best layer per (model, position, target), with its controls:</p>" + table_html(table, digits=2)


def studies_section(run_dir: Path) -> str:
    """The study pages beside this experiment (``run_dir/../studies/*/report.html``, where
    ``workbench study`` writes them by default), each folded with a relative link, the number
    of runs its table holds and its figure; the study page itself holds the numbers."""
    pages = sorted((run_dir.parent / "studies").glob("*/report.html"))
    if not pages:
        return ('<p class="note">No study page beside this run yet. <code>workbench study studies/remedies.toml --subset quick</code> '
                f"writes one into <code>{html.escape(str(run_dir.parent / 'studies' / 'remedies'))}</code>; run <code>workbench report</code> "
                "again to list it here.</p>")
    parts = []
    for page in pages:
        folder = page.parent
        table = _read(folder / "study.csv")
        runs = table["run"].nunique() if table is not None and "run" in table else 0
        seeds = table["seed"].nunique() if table is not None and "seed" in table else 0
        link = html.escape(Path(os.path.relpath(page, run_dir)).as_posix())
        figures = sorted(folder.glob("*.png"))
        parts.append(details(f"Study {folder.name}: {runs} run(s), {seeds} seed(s)", (
            f'<p>The page: <a href="{link}">{link}</a> (summary table with mean &plusmn; sd over seeds, per-run tables).</p>'
            + "".join(img(figure, f"study {folder.name}: {figure.stem}") for figure in figures))))
    return "".join(parts)


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from the saved tables and figures."""
    run_dir = Path(run_dir)
    results = _read(run_dir / "results.csv")
    if results is None:
        raise FileNotFoundError(f"{run_dir / 'results.csv'}: not found; run `workbench main --out {run_dir}` first")
    probes = _read(run_dir / "probes" / "probes.csv")
    analyses = run_dir / "analyses"
    tables = {name: _read(analyses / f"{name}.csv") for name in ("cheat_test", "edge_lookup", "patching", "cka")}
    cheat = tables["cheat_test"]
    degree = int(results["degree"].iloc[0])
    summary = summary_table(results, tables, probes)
    parts = [
        "<h1>Why next-token prediction fails on the path-star task: report</h1>",
        f'<p class="note">Generated by <code>workbench report {html.escape(str(run_dir))}</code> from the tables and figures in that directory.</p>',
        "<h2>Summary</h2>",
        f"<p>One row per model, on {int(results['n_graphs'].iloc[0])} held-out graphs of G({degree},{int(results['path_length'].iloc[0])},"
        f"{int(results['num_nodes'].iloc[0])}). r2 is the first decision (chance {1 / degree:.2f}, as for the goal arm); "
        "<code>eq</code> is the '=' token. A model trained with more than one seed (the main job trains its first model twice) "
        "shows the mean over seeds with the range and the number of seeds for accuracy and the goal node at '='; every other number is one seed's "
        "and carries no spread (a study over seeds gives it: <code>workbench study</code>). Probe columns: the best of every hook and position probed; "
        "control task = the same probe on Hewitt &amp; Liang control labels; untrained = the same probe on the model before training. "
        "Patching recovery: the largest share of r2's logit difference restored by one clean activation when the goal is moved to another arm.</p>",
        table_html(summary, index=False),
        "<p>Teacher-forced vs free-running accuracy per answer position: r2 (the first decision) is where next-token training fails.</p>",
        img(analyses / "accuracy_gap.png", "accuracy gap"),
        "<h2>Details</h2>",
        details("What this run shows: the findings per model, in sentences", findings(results, tables, probes, degree)),
        details("Setup: runs, sizes and training settings", setup_section(run_dir)),
        details("Per-token accuracy and loss, every position and model", accuracy_section(results)),
        details("The Clever Hans cheat: cheat test and edge-lookup heads", (
            "<p>(a) Cheat test: the answer so far is fed along a wrong arm while the prompt (and its goal) is unchanged. "
            "A model that follows the edge out of the given token continues along the wrong arm.</p>" + img(analyses / "cheat_test.png", "cheat test")
            + (table_html(cheat.pivot_table(index=["arch", "objective", "outcome"], columns="position", values="rate", sort=False)) if cheat is not None and len(cheat) else "")
            + "<p>(b) Edge lookup by attention heads (GPT only: Mamba has no attention pattern).</p>" + img(analyses / "edge_lookup.png", "edge lookup heads"))),
        details("Loss of first-token supervision: loss curves and gradient shares", (
            "<p>(a) Per-position training loss over training (every position is logged, also where an objective puts no loss).</p>" + img(analyses / "loss_curves.png", "loss curves")
            + "<p>(b) Where the gradient comes from, along saved snapshots.</p>" + img(analyses / "gradient_shares.png", "gradient shares")
            + "<p>(c) <code>first_decision_only</code> trains r2 alone on next_token's inputs: its r2 accuracy answers whether r2 is learnable without the later tokens.</p>")),
        details("Linear probes: the best layer per (model, position, target), with its controls", (
            "<p>Logistic regression on standardised activations, C chosen by 3-fold cross-validation on the probe's training graphs, scored on other held-out graphs. "
            "Controls: the same probe on the untrained model (in brackets in the figures), a Hewitt &amp; Liang control task (labels a fixed random function of a node name; "
            "selectivity = accuracy &minus; control), and the embedding layer.</p>"
            + (probe_summary(probes) if probes is not None else '<p class="note">(no probe table)</p>'))),
        details("Linear probes: heatmaps, one per target", "".join(img(path, path.stem) for path in sorted((run_dir / "probes").glob("probe_*.png")))),
        details("Probes over training snapshots", img(analyses / "probes_over_training.png", "probes over training")),
        details("Representations across objectives (CKA), layer by layer and the last layers per pair", img(analyses / "cka.png", "CKA")
                + ("<p>Linear CKA between the two models' last layers at '=' (1 = the same up to rotation and scale):</p>" + table_html(cka_summary(tables["cka"]), digits=2) if tables["cka"] is not None else "")),
        details("Where the goal reaches the first decision (patching), per layer and position", img(analyses / "patching.png", "patching")),
        "<h2>Studies</h2>",
        "<p>Grids of runs over objectives, archs, graphs, depths and seeds (<code>workbench study</code>), each with its own page.</p>",
        studies_section(run_dir),
    ]
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>Pitfalls workbench report</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    path = run_dir / "report.html"
    atomic_write_text(path, page)
    return path
