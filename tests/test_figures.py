"""Figures say what they measure: the loss curves' reference line is ln d of each panel's graph,
and the edge-lookup heatmap compares models position by position."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.analyses import clever_hans, supervision
from workbench.figures import with_panel


def curves(objective: str, degree: int | None) -> pd.DataFrame:
    rows = [{"step": s, "split": "train", "position": p, "loss": 1.0 / (s + 1)} for s in (0, 10, 20) for p in ("r1", "r2", "r3")]
    frame = pd.DataFrame(rows).assign(arch="gpt", objective=objective, seed=0)
    return frame if degree is None else frame.assign(degree=degree)


def dotted_levels(monkeypatch, frame: pd.DataFrame, tmp_path, **kwargs) -> dict[str, list[float]]:
    """{panel: y of its horizontal lines}, read from the grid before it is saved."""
    seen = {}
    real_save = supervision.save_grid

    def spy(grid, path, *args, **kw):
        for panel, ax in grid.axes_dict.items():
            seen[panel] = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
        return real_save(grid, path, *args, **kw)

    monkeypatch.setattr(supervision, "save_grid", spy)
    assert supervision.plot_loss_curves(frame, tmp_path / "loss.png", **kwargs).exists()
    return seen


def test_loss_curve_reference_is_ln_d_of_each_panel(monkeypatch, tmp_path):
    frame = pd.concat([curves("next_token", 2), curves("reverse", 5)], ignore_index=True)
    levels = dotted_levels(monkeypatch, frame, tmp_path)
    assert levels["gpt / next_token"] == pytest.approx([math.log(2)])
    assert levels["gpt / reverse"] == pytest.approx([math.log(5)])


def test_loss_curve_reference_from_the_degree_argument_or_none(monkeypatch, tmp_path):
    frame = pd.concat([curves("next_token", None), curves("reverse", None)], ignore_index=True)
    assert dotted_levels(monkeypatch, frame, tmp_path, degree=3) == {p: [pytest.approx(math.log(3))] for p in ("gpt / next_token", "gpt / reverse")}
    assert dotted_levels(monkeypatch, frame, tmp_path) == {"gpt / next_token": [], "gpt / reverse": []}  # no line rather than a wrong one
    mixed = pd.concat([curves("next_token", 2), curves("next_token", 3)], ignore_index=True)
    with pytest.raises(ValueError, match="panel 'gpt / next_token' mixes graphs of degree \\[2, 3\\]"):
        supervision.loss_reference_levels(with_panel(mixed))


def lookup_frame() -> pd.DataFrame:
    """edge_lookup_attention rows of a 2-layer, 2-head GPT under next_token (predicts r2..r5
    with a lookup) and reverse (r4..r1); mass = position number / 100 + layer / 10 per token."""
    rows = []
    for objective, positions in (("next_token", ["r2", "r3", "r4", "r5"]), ("reverse", ["r4", "r3", "r2", "r1"])):
        for e, position in enumerate(positions, start=1):
            for layer in (0, 1):
                for head in (0, 1):
                    for onto in ("edge_source", "edge_target", "edge_separator"):
                        mass = int(position[1:]) / 100 + layer / 10 + (objective == "reverse") / 5
                        rows.append(dict(layer=layer, head=head, position=position, onto=onto, mass=mass, uniform=1 / (27 + e),
                                         arch="gpt", objective=objective, seed=0, step=100))
    return pd.DataFrame(rows)


def test_edge_lookup_summary_keeps_every_position_of_every_model():
    summary = clever_hans.edge_lookup_summary(lookup_frame())
    by_model = summary.groupby("objective")["position"].unique()
    assert list(by_model["next_token"]) == ["r2", "r3", "r4", "r5"] and list(by_model["reverse"]) == ["r1", "r2", "r3", "r4"]
    row = summary.set_index(["objective", "position", "layer", "head"]).loc[("reverse", "r3", 1, 0)]
    assert row["mass"] == pytest.approx(3 * (0.03 + 0.1 + 0.2))  # the edge's three tokens, that position only
    assert row["uniform"] == pytest.approx(3 / (27 + 2))


def test_edge_lookup_heatmaps_have_the_same_position_rows_in_every_panel(monkeypatch, tmp_path):
    tables = []
    real_heatmap = clever_hans.sns.heatmap
    monkeypatch.setattr(clever_hans.sns, "heatmap", lambda data, **kw: tables.append(data) or real_heatmap(data, **kw))
    assert clever_hans.plot_edge_lookup(lookup_frame(), tmp_path / "lookup.png").exists()
    next_token, reverse = tables
    rows = [f"r{k}  layer {layer}" for k in range(1, 6) for layer in (0, 1)]
    assert list(next_token.index) == rows and list(reverse.index) == rows
    assert next_token.loc["r1  layer 0"].isna().all() and reverse.loc["r5  layer 1"].isna().all()
    np.testing.assert_allclose(next_token.loc["r3  layer 1"], 3 * (0.03 + 0.1))
    np.testing.assert_allclose(reverse.loc["r3  layer 1"], 3 * (0.03 + 0.1 + 0.2))


def test_report_names_the_strongest_lookup_head_of_every_position_even_when_only_r1_r2_exist():
    """On G(2,3) the reverse model looks edges up only for r2 and r1; the report once dropped
    r1 and r2 by name and failed on the empty remainder."""
    from workbench.analyses.report import findings

    lookup = lookup_frame()
    lookup = lookup[(lookup["objective"] == "next_token") | lookup["position"].isin(["r1", "r2"])]
    results = pd.DataFrame([
        dict(arch="gpt", objective=o, seed=0, metric=m, position=p, value=0.5, path_length=5)
        for o in ("next_token", "reverse") for m in ("tf_accuracy", "greedy_accuracy") for p in ("r1", "r2", "r3", "r4", "r5", "path")
    ])
    text = findings(results, {"edge_lookup": lookup}, None, degree=2)
    # mass per head = 3 tokens x (position / 100 + layer / 10 [+ 0.2 for reverse]): layer 1 wins, head 0 first
    assert "r1 layer 1 head 0 93%, r2 layer 1 head 0 96%" in text  # reverse: 3 x (0.01 + 0.1 + 0.2), 3 x (0.02 + 0.1 + 0.2)
    assert "r5 layer 1 head 0 45%" in text  # next_token: 3 x (0.05 + 0.1)


def test_summary_cheat_rate_counts_decisions_only_not_the_copied_goal():
    from workbench.analyses.report import summary_table

    def frames(path_length: int, follow: dict[str, float]):
        positions = [f"r{k}" for k in range(1, path_length + 1)] + ["path"]
        results = pd.DataFrame([dict(arch="gpt", objective="next_token", seed=0, metric=m, position=p, value=0.5, path_length=path_length)
                                for m in ("tf_accuracy", "greedy_accuracy") for p in positions])
        cheat = pd.DataFrame([dict(arch="gpt", objective="next_token", seed=0, position=p, outcome="follow", rate=r, n_scored=10)
                              for p, r in follow.items()])
        return summary_table(results, {"cheat_test": cheat}, None).iloc[0]["cheat test: follows wrong arm"]

    assert frames(5, {"r3": 1.0, "r4": 0.9, "r5": 0.0}) == "0.950"  # r5 is the goal, a copy: left out
    assert frames(3, {"r3": 0.0}) == "n/a"  # on G(d,3) no decision follows a fed token


def test_the_report_names_the_best_patching_site_before_the_last_blocks_output():
    """Patched at the r2 slot after the last block, the clean run's residual hands back r2's
    logits whole (100% by construction): the report's best site is the best one before it, in
    the summary table and in the findings sentence alike."""
    from workbench.analyses.report import findings, summary_table

    results = pd.DataFrame([dict(arch="gpt", objective="reverse", seed=0, metric=m, position=p, value=0.9, path_length=3)
                            for m in ("tf_accuracy", "greedy_accuracy") for p in ("r1", "r2", "r3", "path")])
    sites = [("hook_embed", "embed", 0, "eq", 0.0), ("blocks.0.hook_resid_post", "resid_post", 1, "eq", 0.1),
             ("blocks.0.hook_resid_post", "resid_post", 1, "r3", 0.97), ("blocks.1.hook_resid_post", "resid_post", 2, "r3", 1.0),
             ("blocks.1.hook_resid_post", "resid_post", 2, "eq", 0.0)]
    patching = pd.DataFrame([dict(hook=h, site=s, layer=layer, position=p, ld_clean=10.0, ld_corrupted=-10.0, recovered=r,
                                  arch="gpt", objective="reverse", seed=0) for h, s, layer, p, r in sites])
    row = summary_table(results, {"patching": patching}, None).iloc[0]
    assert row["patching recovery"] == "0.97 (resid_post L1 @ r3)"
    assert "patching blocks.0.hook_resid_post at r3 recovers 97% of it" in findings(results, {"patching": patching}, None, degree=2)
