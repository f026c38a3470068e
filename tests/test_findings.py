"""`workbench findings`: the docs' generated blocks match the committed results, and a change
to one CSV cell is caught, naming the block."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from workbench.cli import main as cli_main
from workbench.findings import BLOCKS, Results, check, render
from workbench.findings.render import block_names

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "findings.md"]


def run_findings(*args: str) -> int:
    try:
        cli_main(["findings", *args])
    except SystemExit as exit_:
        return int(exit_.code)
    return 0


def test_the_committed_docs_match_the_committed_results(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert run_findings("--check") == 0, capsys.readouterr().err
    assert "matches results/" in capsys.readouterr().out


def test_every_block_the_docs_name_exists_and_every_published_job_is_cited():
    names = [name for document in DOCUMENTS for name in block_names(document.read_text())]
    assert len(names) >= 30 and set(names) <= set(BLOCKS)
    jobs = {path.name for path in (ROOT / "results").iterdir() if (path / "provenance.json").exists()}
    assert jobs and {f"{job}.provenance" for job in jobs} <= set(names)  # each published job's provenance is shown


def test_editing_one_csv_cell_fails_the_check_naming_the_block(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    table = pd.read_csv(results / "main_job" / "results.csv")
    row = (table["arch"] == "mamba") & (table["objective"] == "reverse") & (table["metric"] == "tf_accuracy") & (table["position"] == "r3")
    assert row.sum() == 1
    table.loc[row, "value"] = 0.123
    table.to_csv(results / "main_job" / "results.csv", index=False)
    monkeypatch.chdir(ROOT)
    assert run_findings("--check", "--results", str(results)) == 1
    err = capsys.readouterr().err
    assert "block 'main_job.accuracy' differs" in err and "0.123" in err
    assert "main_job.signature" not in err  # a GPT table: the Mamba cell does not reach it


def test_render_writes_tables_on_their_own_lines_and_numbers_inline(tmp_path):
    results = Results(ROOT / "results")
    text = "r2: <!-- findings:main_job.gpt.next_token.r2 -->old<!-- /findings:main_job.gpt.next_token.r2 -->\n" \
           "<!-- findings:main_job.signature -->old<!-- /findings:main_job.signature -->\n"
    new = render(text, results)
    inline, table = new.splitlines()[0], new.split("\n", 1)[1]
    assert "old" not in new and "\n" not in inline and " ± " in inline  # two seeds of GPT next_token
    assert table.startswith("<!-- findings:main_job.signature -->\n| ") and table.endswith("|\n<!-- /findings:main_job.signature -->\n")
    assert check(new, results) == [] and len(check(text, results)) == 2
    assert render(new, results) == new  # rendering is idempotent


def test_a_misspelled_or_unclosed_block_is_an_error_naming_the_line(tmp_path):
    results = Results(ROOT / "results")
    with pytest.raises(ValueError, match=r"doc.md:2: unknown block 'main_job.acuracy' \(did you mean main_job.accuracy"):
        render("x\n<!-- findings:main_job.acuracy --><!-- /findings:main_job.acuracy -->", results, Path("doc.md"))
    with pytest.raises(ValueError, match=r"doc.md:1: .*has no closing '<!-- /findings:main_job.accuracy -->'"):
        render("<!-- findings:main_job.accuracy -->", results, Path("doc.md"))


def test_a_missing_results_folder_names_the_command_that_writes_it(tmp_path, capsys):
    document = tmp_path / "doc.md"
    document.write_text("<!-- findings:solvers.summary --><!-- /findings:solvers.summary -->\n")
    assert run_findings("--check", "--results", str(tmp_path / "empty"), "--docs", str(document)) == 2
    assert "solvers/study.csv: not found; the job that writes it: workbench study studies/solvers.toml" in capsys.readouterr().err


def test_findings_rewrites_a_stale_document_and_draws_the_figures(tmp_path, capsys):
    document = tmp_path / "doc.md"
    document.write_text("<!-- findings:main_job.later_min -->0%<!-- /findings:main_job.later_min -->\n")
    assert run_findings("--results", str(ROOT / "results"), "--docs", str(document), "--figures", str(tmp_path / "figures")) == 0
    assert "0%<" not in document.read_text() and "rewritten" in capsys.readouterr().out
    assert (tmp_path / "figures" / "main_job_accuracy.png").stat().st_size > 10_000
    assert run_findings("--check", "--results", str(ROOT / "results"), "--docs", str(document)) == 0


def test_hops_learned_names_how_the_first_unlearned_path_length_ended(tmp_path):
    """The depth table under a plateau rule: hops learned per layer count, and whether the next
    hop failed on a plateau (the model's limit) or at the cap (the budget's)."""
    from workbench.findings.blocks import depth_hops

    rows = []
    for layers, cells in ((1, [(2, 1.0, 500, "solved"), (3, 0.50, 3000, "plateau"), (4, 0.30, 2500, "plateau")]),
                          (2, [(2, 1.0, 500, "solved"), (3, 0.97, 4000, "plateau"), (4, 0.52, 8000, "cap")])):
        for length, r2, steps, ended in cells:
            run = f"gpt-first_decision_only-G2_{length}_50-cpu-n_layers{layers}-s0"
            identity = dict(study="depth", objective="first_decision_only", arch="gpt", graph=f"G(2,{length},50)", preset="cpu",
                            overrides=f"model.n_layers={layers}", seed=0, run=run)
            rows += [identity | dict(metric="train_steps", hook="", position="", value=steps),
                     identity | dict(metric="stopped_by_rule", hook="", position=ended, value=float(ended != "cap")),
                     identity | dict(metric="tf_accuracy", hook="", position="r2", value=r2),
                     identity | dict(metric="tf_loss", hook="", position="r2", value=0.7)]
    (tmp_path / "depth").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "depth" / "study.csv", index=False)
    from workbench.findings.blocks import depth_cell

    assert depth_cell(Results(tmp_path), "depth", 2, 3) == "1 of 1 seeds (r2 0.970)"
    assert depth_cell(Results(tmp_path), "depth", 2, 4) == "0 of 1 seeds (r2 0.520)"
    from workbench.findings.blocks import r2_loss_against_chance

    assert r2_loss_against_chance(Results(tmp_path), "depth", 2, 4) == "0.7000 (1 of 1 above ln 2 = 0.6931)"
    with pytest.raises(ValueError, match="no run with 3 layers at l = 4"):
        r2_loss_against_chance(Results(tmp_path), "depth", 3, 4)
    table = depth_hops(Results(tmp_path), "depth").splitlines()
    assert table[2] == "| gpt first_decision_only | 1 | 0 | 0 | 0-2 | 0.500 at 1 hops, plateau at 3,000 steps |"
    assert table[3] == "| gpt first_decision_only | 2 | 0 | 1 | 0-2 | 0.520 at 2 hops, cap at 8,000 steps |"

    # the same grid as the depth figure reads it: one row per seed and layer count
    from workbench.findings.blocks import hops_by_layers
    from workbench.study.figures import plot_hops_by_layers

    hops = hops_by_layers(Results(tmp_path), jobs=("depth", "not_published"))
    assert hops[["layers", "hops", "hops_tried", "next_hop_ended"]].values.tolist() == [[1, 0, 2, "plateau"], [2, 1, 2, "cap"]]
    assert plot_hops_by_layers(hops, tmp_path / "hops.png").stat().st_size > 10_000

    # a later job that re-runs one cell with a higher cap replaces that cell's run, not the rest
    long = [row | {"value": {"train_steps": 11_000, "stopped_by_rule": 1.0, "tf_accuracy": 0.95}.get(row["metric"], row["value"]),
                   "position": "solved" if row["metric"] == "stopped_by_rule" else row["position"]}
            for row in rows if row["run"] == "gpt-first_decision_only-G2_4_50-cpu-n_layers2-s0"]
    (tmp_path / "depth_long").mkdir()
    pd.DataFrame(long).to_csv(tmp_path / "depth_long" / "study.csv", index=False)
    hops = hops_by_layers(Results(tmp_path), jobs=("depth", "depth_long"))
    assert hops[["layers", "hops", "hops_tried", "next_hop_ended"]].values.tolist() == [[1, 0, 2, "plateau"], [2, 2, 2, ""]]
    with pytest.raises(FileNotFoundError, match="none published"):
        hops_by_layers(Results(tmp_path), jobs=("not_published",))

    # a grid tried only from two hops on (here l = 4) says of a seed that learned none that it
    # learned fewer than two, not none; jobs published in parts read as one
    (tmp_path / "deep").mkdir()
    pd.DataFrame([row for row in rows if row["graph"] == "G(2,4,50)" and "n_layers1" in row["run"]]).to_csv(tmp_path / "deep" / "study.csv", index=False)
    table = depth_hops(Results(tmp_path), ("deep", "depth_long")).splitlines()
    assert table[2] == "| gpt first_decision_only | 1 | 0 | fewer than 2 | 2-2 | 0.300 at 2 hops, plateau at 2,500 steps |"
    assert table[3] == "| gpt first_decision_only | 2 | 0 | 2 | 2-2 | all tried learned |"  # depth_long's 0.95


def test_cells_run_at_two_learning_rates_are_set_side_by_side_per_seed(tmp_path):
    """The depth grid at the preset's learning rate (no train.lr override: the Mamba cpu
    preset's 5e-3) beside a study of the same cell at train.lr=2.5e-3: a row per seed with both
    runs, the seeds learned per rate, and the curves of exactly those runs for the figure."""
    from workbench.findings.blocks import depth_by_lr, depth_lr_curves, depth_lr_learned, depth_lr_table
    from workbench.study.figures import plot_r2_by_lr

    def runs(job: str, lr: str | None, cells: list[tuple[int, int, float, str]]) -> None:
        rows, curves = [], []
        for length, seed, r2, ended in cells:
            overrides = "model.n_layers=3" + (f" train.lr={lr}" if lr else "")
            run = f"mamba-first_decision_only-G2_{length}_50-cpu-n_layers3{'-lr' + lr if lr else ''}-s{seed}"
            identity = dict(study=job, objective="first_decision_only", arch="mamba", graph=f"G(2,{length},50)", preset="cpu",
                            overrides=overrides, seed=seed, run=run)
            rows += [identity | dict(metric="train_steps", hook="", position="", value=8000 if ended == "cap" else 5500),
                     identity | dict(metric="stopped_by_rule", hook="", position=ended, value=float(ended != "cap")),
                     identity | dict(metric="tf_accuracy", hook="", position="r2", value=r2),
                     identity | dict(metric="tf_loss", hook="", position="r2", value=0.5)]
            curves += [identity | dict(step=step, split="test", metric="tf_accuracy", position="r2", value=r2 * step / 8000)
                       for step in (0, 4000, 8000)]
        (tmp_path / job).mkdir()
        pd.DataFrame(rows).to_csv(tmp_path / job / "study.csv", index=False)
        pd.DataFrame(curves).to_csv(tmp_path / job / "curves.csv", index=False)

    runs("grid", None, [(3, 0, 0.99, "solved"), (4, 0, 0.89, "cap"), (4, 1, 0.51, "plateau")])
    runs("half", "2.5e-3", [(4, 0, 0.95, "cap"), (4, 1, 0.93, "cap")])
    results, jobs = Results(tmp_path), ("grid", "half")

    frame = depth_by_lr(results, jobs)
    assert sorted(zip(frame["seed"], frame["lr"])) == [(0, 0.0025), (0, 0.005), (1, 0.0025), (1, 0.005)]  # l = 3 left out
    assert depth_lr_table(results, jobs).splitlines() == [
        "| model | layers | seed | r2 at lr 5e-3 | r2 at lr 2.5e-3 |",
        "|---|---|---|---|---|",
        "| mamba first_decision_only | 3 | 0 | 0.890 (0.50, cap at 8,000) | 0.950 (0.50, cap at 8,000) |",
        "| mamba first_decision_only | 3 | 1 | 0.510 (0.50, plateau at 5,500) | 0.930 (0.50, cap at 8,000) |"]
    assert depth_lr_learned(results, jobs) == "3 layers: 0 of 2 at lr 5e-3, 2 of 2 at lr 2.5e-3"
    curves = depth_lr_curves(results, jobs)
    assert len(curves) == 4 * 3 and set(curves["layers"]) == {3}
    assert plot_r2_by_lr(curves, tmp_path / "lr.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="two learning rates"):
        depth_by_lr(results, ("grid",))
    with pytest.raises(ValueError, match="no cell on G\\(2,3,50\\)"):  # l = 3 was run at one rate only
        depth_by_lr(results, jobs, "G(2,3,50)")

    # a third rate adds a column, highest rate first; a seed missing at one rate leaves its cell blank
    runs("double", "1e-2", [(4, 0, 0.48, "plateau")])
    jobs = ("grid", "half", "double")
    table = depth_lr_table(results, jobs).splitlines()
    assert table[0] == "| model | layers | seed | r2 at lr 1e-2 | r2 at lr 5e-3 | r2 at lr 2.5e-3 |"
    assert table[3] == "| mamba first_decision_only | 3 | 1 |  | 0.510 (0.50, plateau at 5,500) | 0.930 (0.50, cap at 8,000) |"
    assert depth_lr_learned(results, jobs) == "3 layers: 0 of 1 at lr 1e-2, 0 of 2 at lr 5e-3, 2 of 2 at lr 2.5e-3"

    # every rate counted: each seed at the rate that taught it the most hops
    from workbench.findings.blocks import hops_at_best_rate

    best = hops_at_best_rate(results, grid=("grid",), rates=("half", "double", "not_published"))
    assert best[["seed", "lr", "hops", "hops_tried", "next_hop_ended"]].values.tolist() == [[0, 0.0025, 2, 2, ""], [1, 0.0025, 2, 2, ""]]
    assert set(best["rates"]) == {"1e-2, 5e-3, 2.5e-3"}  # every rate tried, for the figure's title
    runs("half_l5", "2.5e-3", [(5, 0, 0.40, "plateau")])  # seed 0's third hop tried at 2.5e-3: its row says how it ended
    best = hops_at_best_rate(results, grid=("grid",), rates=("half", "half_l5"))
    assert best[["seed", "lr", "hops", "hops_tried", "next_hop_ended"]].values.tolist() == [[0, 0.0025, 2, 3, "plateau"], [1, 0.0025, 2, 2, ""]]
    only_grid = hops_at_best_rate(results, grid=("grid",), rates=("double",))  # seed 1 tried only l = 4 at 5e-3, learned none
    assert only_grid[["seed", "lr", "hops", "hops_from", "next_hop_ended"]].values.tolist() == [[0, 0.005, 1, 1, "cap"], [1, 0.005, -1, 2, "plateau"]]
    # a tie in hops goes to the rate that tried more (here the grid, which tried l = 4 too)
    runs("slow", "1e-3", [(3, 0, 0.95, "solved")])
    assert hops_at_best_rate(results, grid=("grid",), rates=("slow",))[["seed", "lr", "hops", "hops_tried"]].values.tolist()[0] == [0, 0.005, 1, 2]
    # a rate that tried only longer paths and learned none says nothing of the shorter ones: a
    # seed that failed the copy (l = 2) in the grid keeps that row, though the other tried more
    runs("copy", None, [(2, 5, 0.30, "plateau")])
    runs("long", "1e-2", [(4, 5, 0.40, "plateau")])
    assert hops_at_best_rate(results, grid=("copy",), rates=("long",))[["seed", "lr", "hops", "hops_from", "hops_tried"]].values.tolist() == [
        [5, 0.005, -1, 0, 0]]
    with pytest.raises(FileNotFoundError, match="none published"):
        hops_at_best_rate(results, grid=("not_published",), rates=())


def test_still_falling_reports_the_unsolved_runs_last_window_naming_objectives_when_several(tmp_path):
    """The budget test of a negative result: each unsolved run's r2 loss over its last 1,000
    steps, with the direction said in words; a solved run is left out."""
    from workbench.findings.blocks import still_falling

    rows = []
    for objective, seed, losses, final in (("mtp", 0, (0.80, 0.78, 0.76), 0.50), ("bst", 1, (0.80, 0.82, 0.84), 0.49),
                                           ("bst", 2, (0.80, 0.40, 0.05), 0.99)):
        identity = dict(objective=objective, arch="mamba", graph="G(2,5,50)", seed=seed, run=f"mamba-{objective}-s{seed}")
        for step, loss in zip((4000, 5000, 6000), losses):
            rows += [identity | dict(step=step, split="test", metric="tf_loss", position="r2", value=loss),
                     identity | dict(step=step, split="test", metric="tf_accuracy", position="r2", value=final)]
    (tmp_path / "job").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "job" / "curves.csv", index=False)
    assert still_falling(Results(tmp_path), "job") == "mtp seed 0: 0.780 -> 0.760 (2.6% down); bst seed 1: 0.820 -> 0.840 (2.4% up)"
    # runs of one objective told apart by their overrides: each named by the items it does not share
    frame = pd.DataFrame(rows).assign(objective="bst")
    frame["overrides"] = frame["seed"].map({0: "model.n_layers=3 train.lr=2.5e-3", 1: "model.n_layers=4 train.lr=2.5e-3", 2: "model.n_layers=4 train.lr=2.5e-3"})
    frame.to_csv(tmp_path / "job" / "curves.csv", index=False)
    assert still_falling(Results(tmp_path), "job") == ("model.n_layers=3 seed 0: 0.780 -> 0.760 (2.6% down); "
                                                        "model.n_layers=4 seed 1: 0.820 -> 0.840 (2.4% up)")
    # one variant's runs only: its shared items are no longer told, the other variant's runs left out
    assert still_falling(Results(tmp_path), "job", overrides="model.n_layers=4 train.lr=2.5e-3") == "seed 1: 0.820 -> 0.840 (2.4% up)"


def test_a_study_published_in_parts_reads_as_one_table(tmp_path):
    """``Results.table`` with a tuple of jobs: the parts' rows as one frame, ordered by graph,
    each part's order kept within a graph, so a block reads a study however it was published."""
    for job, rows in (("part_a", [("future_bow", "G(2,5,50)", 0), ("future_bow", "G(2,4,50)", 1)]),
                      ("part_b", [("bst", "G(2,4,50)", 2), ("bst", "G(2,5,50)", 3)])):
        (tmp_path / job).mkdir()
        pd.DataFrame(rows, columns=["objective", "graph", "value"]).to_csv(tmp_path / job / "study.csv", index=False)
    frame = Results(tmp_path).table(("part_a", "part_b"), "study")
    assert list(zip(frame["objective"], frame["graph"])) == [("future_bow", "G(2,4,50)"), ("bst", "G(2,4,50)"),
                                                             ("future_bow", "G(2,5,50)"), ("bst", "G(2,5,50)")]
    assert frame["value"].tolist() == [1, 2, 0, 3]
    with pytest.raises(FileNotFoundError, match="part_c"):
        Results(tmp_path).table(("part_a", "part_c"), "study")


def test_the_control_published_in_two_parts_gives_each_graph_its_own_numbers(tmp_path):
    """The next_token control is two jobs, one per graph; each graph's value blocks read that
    graph's runs only (G(2,4,50)'s keep their names, G(2,5,50)'s carry ``g25``), while its
    summary table holds both."""
    for job, graph, accuracies in (("deep_solvers_control", "G(2,4,50)", (0.50, 0.52)), ("deep_solvers_gpt_next_token_g25", "G(2,5,50)", (0.40, 0.44, 0.48))):
        (tmp_path / job).mkdir()
        rows = [{"run": f"{graph}-s{seed}", "arch": "gpt", "objective": "next_token", "graph": graph, "overrides": "", "seed": seed,
                 "metric": "tf_accuracy", "position": "r2", "hook": "", "value": value} for seed, value in enumerate(accuracies)]
        pd.DataFrame(rows).to_csv(tmp_path / job / "study.csv", index=False)
    results = Results(tmp_path)
    assert BLOCKS["deep_solvers_control.next_token.r2"](results) == "0.510 ± 0.014 (2)"
    assert BLOCKS["deep_solvers_control.g25.next_token.r2"](results) == "0.440 ± 0.040 (3)"
    summary = BLOCKS["deep_solvers_control.summary"](results)
    assert "G(2,4,50)" in summary and "0.400 / 0.440 / 0.480" in summary


def test_the_mtp_blocks_of_each_graph_read_that_graphs_seeds_only(tmp_path):
    """mtp's per-seed blocks of the GPT solvers name a graph (``g24``, ``g25``): with both graphs'
    runs in GPT_SOLVERS, each block lists its own graph's seeds, in seed order; a per-seed
    value over several runs of one seed is an error, not a longer list."""
    from workbench.findings.blocks import GPT_SOLVERS, per_seed_at

    values = {"G(2,4,50)": (0.95, 0.99, 0.54), "G(2,5,50)": (0.51, 0.97)}
    for job in GPT_SOLVERS:
        (tmp_path / job).mkdir()
        rows = [{"run": f"{graph}-s{seed}", "arch": "gpt", "objective": "mtp", "graph": graph, "overrides": "", "seed": seed,
                 "metric": "tf_accuracy", "position": "r2", "hook": "", "value": value}
                for graph, accuracies in values.items() for seed, value in reversed(list(enumerate(accuracies)))
                if job == GPT_SOLVERS[0]]
        pd.DataFrame(rows, columns=["run", "arch", "objective", "graph", "overrides", "seed", "metric", "position", "hook", "value"]).to_csv(
            tmp_path / job / "study.csv", index=False)
    results = Results(tmp_path)
    assert BLOCKS["deep_solvers_gpt.g24.mtp.answer_r2"](results) == "95.0% / 99.0% / 54.0%"
    assert BLOCKS["deep_solvers_gpt.g25.mtp.answer_r2"](results) == "51.0% / 97.0%"
    with pytest.raises(ValueError, match="several mtp runs per seed"):
        per_seed_at(results, GPT_SOLVERS, "mtp", "tf_accuracy", "r2", "")


def test_mtp_hops_back_reads_each_head_where_it_guesses_before_the_first_decision(tmp_path):
    """Head o's guess at answer token e is read o - 1 slots before the slot that emits it; the
    table keeps the inner nodes (r2..r(l-1)) whose guess is read no later than the r1 slot, with
    their distance from the goal: on G(2,5,50) head 3 reads r4 (one hop back) at r1, head 2 reads
    r3 at r1 and r2 at '=', head 3 reads r3 at '=' and r2 at the goal token."""
    from workbench.findings.blocks import mtp_hops_back

    (tmp_path / "job").mkdir()
    rows = [{"run": f"s{seed}", "arch": "gpt", "objective": "mtp", "graph": "G(2,5,50)", "overrides": "", "seed": seed,
             "metric": metric, "position": f"r{answer}", "hook": "", "value": value}
            for seed in (1, 0) for metric, answer, value in
            (("tf_accuracy", 2, 0.5), ("tf_accuracy", 3, 1.0), ("head2_accuracy", 2, 0.51), ("head2_accuracy", 3, 0.52),
             ("head2_accuracy", 4, 1.0), ("head3_accuracy", 2, 0.53), ("head3_accuracy", 3, 0.54), ("head3_accuracy", 4, 0.9 + seed / 20))]
    pd.DataFrame(rows).to_csv(tmp_path / "job" / "study.csv", index=False)
    # the curve: each guess at its final value from step 1,000 on, seed 0's r4 first reaching 90% at step 2,000
    curve = [{**row, "split": "test", "step": step, "value": row["value"] if step > 1000 or row["seed"] == 1 else 0.5}
             for row in rows for step in (1000, 2000)]
    pd.DataFrame(curve).to_csv(tmp_path / "job" / "curves.csv", index=False)
    table = mtp_hops_back(Results(tmp_path), "job").splitlines()
    assert table[0].endswith("| accuracy per seed | first at 90%, step |")
    assert table[2:] == ["| G(2,5,50) | 1 | r4 | head 3 | r1 | 90.0% / 95.0% | 2,000 / 1,000 |",
                         "| G(2,5,50) | 2 | r3 | head 2 | r1 | 52.0% / 52.0% | never / never |",
                         "| G(2,5,50) | 2 | r3 | head 3 | = | 54.0% / 54.0% | never / never |",
                         "| G(2,5,50) | 3 | r2 | the answer | r1 | 50.0% / 50.0% | never / never |",
                         "| G(2,5,50) | 3 | r2 | head 2 | = | 51.0% / 51.0% | never / never |",
                         "| G(2,5,50) | 3 | r2 | head 3 | the goal token | 53.0% / 53.0% | never / never |"]


def test_provenance_keeps_the_code_a_job_started_from_and_names_a_checkout_that_moved(tmp_path, monkeypatch):
    """A study runs for hours; the code that trained is the checkout's at its start. If the
    checkout moved before publishing, the record keeps the start and adds the later state,
    and the findings' sentence says both."""
    import json

    from workbench import publish
    from workbench.findings.blocks import provenance_sentence

    states = iter([{"commit": "a" * 40, "dirty": False}, {"commit": "b" * 40, "dirty": True}, {"commit": "b" * 40, "dirty": True}])
    monkeypatch.setattr(publish, "source_commit", lambda: next(states))
    start = publish.source_commit()  # as the study driver and the main job take it
    moved = publish.provenance(0.0, [0], 1, "cpu", [], start)
    assert (moved["commit"], moved["dirty"]) == ("a" * 40, False)
    assert moved["code_at_publish"] == {"commit": "b" * 40, "dirty": True}
    still = publish.provenance(0.0, [0], 1, "cpu", [])  # no start given: the state now, nothing beside it
    assert still["commit"] == "b" * 40 and "code_at_publish" not in still
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "provenance.json").write_text(json.dumps(moved | {"command": "workbench study x.toml"}))
    sentence = provenance_sentence(Results(tmp_path), "job")
    assert "commit `aaaaaaaaaa` (the checkout at publishing: `bbbbbbbbbb with local changes`)" in sentence

    # a re-run that only gathered finished runs says so, beside each run's own training time
    runs = [{"run": "r0", "train_seconds": 600.0, "trained_in_this_invocation": False},
            {"run": "r1", "train_seconds": 1200.0, "trained_in_this_invocation": True}]
    (tmp_path / "job" / "provenance.json").write_text(json.dumps(moved | {"command": "workbench study x.toml", "wall_seconds": 1300.0, "runs": runs}))
    assert "for 2 run(s) (1 trained by an earlier invocation); training 10 min to 20 min per run" in provenance_sentence(Results(tmp_path), "job")
    runs[0]["threads"], runs[1]["threads"] = 2, 1  # r0 trained at other threads than the gathering call's
    (tmp_path / "job" / "provenance.json").write_text(json.dumps(moved | {"command": "x", "wall_seconds": 1.0, "parallel_runs": 2, "runs": runs}))
    assert "1 thread(s) per run, 2 run(s) at a time; r0 trained at 2 thread(s)." in provenance_sentence(Results(tmp_path), "job")


def test_the_recorded_device_names_the_cpus_widest_vectors(monkeypatch):
    """One model name ("AMD EPYC") covers CPUs with and without AVX-512, whose Mamba kernels
    differ in speed: a run's provenance says which it had."""
    import os

    import workbench.publish as publish

    for flags, width in (("fpu sse2 avx2 fma avx512f avx512bw", "AVX-512"), ("fpu sse2 avx2 fma", "AVX2"), ("fpu sse2", None)):
        cpuinfo = f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n"
        monkeypatch.setattr(publish.Path, "read_text", lambda self, *args, **kwargs: cpuinfo)
        assert publish.vector_width() == width
        assert publish.device_name() == f"Some CPU{f' ({width})' if width else ''}, {os.cpu_count()} cores"


def test_the_recorded_command_pastes_back_as_the_same_arguments(monkeypatch):
    """A published job's command is quoted for a shell: a subset filter with a space in it
    (one argument) must not come back as two."""
    import shlex

    from workbench.publish import provenance

    argv = ["/venv/bin/workbench", "study", "studies/depth_lr.toml", "--subset", "overrides=model.n_layers=3 train.lr=2.5e-3", "seeds=0"]
    monkeypatch.setattr("sys.argv", argv)
    record = provenance(started=0.0, seeds=[0], threads=1, device="cpu", runs=[])
    assert shlex.split(record["command"]) == ["workbench", *argv[1:]]
