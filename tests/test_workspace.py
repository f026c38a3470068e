"""The researcher's workspace stays true: every notebook in analyses/ runs, as a script and as a
Jupyter notebook, on the shipped checkpoints with few graphs, and asserts the numbers it shows; every probe experiment in probes/ parses, a bad one is
refused with the file and the key named, and ``workbench probe --spec`` writes its table."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from conftest import tiny_config
from workbench.cli import main as cli_main
from workbench.main_job import default_configs, run_name
from workbench.probes.spec import KEYS, ProbeSpec, load_spec, resolve_checkpoints
from workbench.train import train

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "analyses").glob("[0-9][0-9]_*.py"))
SPECS = sorted((ROOT / "probes").glob("*.toml"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (two threads on a busy 2-core machine spin-wait:
    measured 3x the CPU time); the kernels nbclient starts get the same through the environment."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Tiny settings for the notebooks, and one folder for the models they train, so the
    notebooks after the first reuse its models (as they do from runs/notebooks)."""
    runs = tmp_path_factory.mktemp("notebook-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_NOTEBOOK_SMOKE", "1")
        patch.setenv("WORKBENCH_NOTEBOOK_RUNS", str(runs))
        patch.syspath_prepend(str(ROOT / "analyses"))  # `from workspace import ...`, as a script run from there
        yield runs


def test_notebooks_are_the_four_questions_in_reading_order():
    assert [n.name for n in NOTEBOOKS] == ["01_the_failure.py", "02_what_is_decodable.py", "03_patching.py", "04_comparing_objectives.py"]
    for notebook in NOTEBOOKS:
        text = notebook.read_text()
        cells = re.findall(r"^# %%.*$", text, flags=re.MULTILINE)
        assert cells[0] == "# %% [markdown]", notebook.name  # opens with the question
        assert cells[1] == '# %% tags=["parameters"]', notebook.name  # then the parameter cell
        parameters = text.split('# %% tags=["parameters"]')[1].split("# %%")[0]
        assert 'os.environ.get("WORKBENCH_NOTEBOOK_SMOKE") == "1"' in parameters, notebook.name
        assert cells.count("# %% [markdown]") >= 4, notebook.name  # prose between the steps


def test_the_workspace_reads_the_shipped_checkpoint_or_trains_a_tiny_model_when_asked(smoke, capsys):
    import workspace

    shipped = workspace.reference_or_train("gpt", "next_token", steps=20)
    assert shipped.path.name == "gpt-next_token-G2_5_50" and shipped.step > 1_000
    trained = workspace.reference_or_train("gpt", "next_token", steps=20, train=True, tiny=True)
    assert trained.step == 20 and trained.config.model.d_model == 32 and str(smoke) in str(trained.path)
    again = workspace.reference_or_train("gpt", "next_token", steps=20, train=True, tiny=True)
    assert again.path == trained.path and "trained earlier, loaded" in capsys.readouterr().out


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_as_a_script(notebook, smoke):
    runpy.run_path(str(notebook), run_name="__main__")
    plt.close("all")


# Every notebook converts and executes in Jupyter; by default the quickest one is run that way
# (each costs a fresh kernel and its imports), all four under `pytest -m slow`.
IN_JUPYTER = [pytest.param(n, id=n.stem, marks=[] if n.name == "03_patching.py" else [pytest.mark.slow]) for n in NOTEBOOKS]


@pytest.mark.parametrize("notebook", IN_JUPYTER)
def test_notebook_executes_in_jupyter_with_inline_figures(notebook, smoke):
    """jupytext turns the percent file into a notebook; nbclient runs it in a fresh kernel."""
    jupytext = pytest.importorskip("jupytext", reason="the dev extra installs jupytext")
    nbclient = pytest.importorskip("nbclient", reason="the dev extra installs nbclient")
    book = jupytext.read(notebook)
    nbclient.NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}).execute()
    outputs = [output for cell in book.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # figures show inline


def test_every_shipped_probe_spec_parses_and_names_the_main_jobs_models():
    """Each names the main job's eight models: the shipped checkpoints, or (for probes along
    training, which need the snapshots the shipped ones do not keep) the main job's own runs."""
    assert {s.name for s in SPECS} >= {"goal_arm.toml", "goal_at_eq.toml", "main_job.toml", "goal_arm_over_training.toml"}
    jobs = [run_name(config) for config in default_configs()]
    outs = set()
    for file in SPECS:
        spec = load_spec(file)
        assert spec.description and spec.out.startswith("runs/probes/"), file.name
        expected = {f"runs/default/checkpoints/{job}" for job in jobs} if spec.snapshots else {f"{job}-G2_5_50" for job in jobs}
        assert set(spec.checkpoints) == expected, file.name
        outs.add(spec.out)
    assert len(outs) == len(SPECS)  # no two experiments write into one folder
    arm = load_spec(ROOT / "probes" / "goal_arm.toml")
    assert arm.targets == ("arm",) and arm.positions == ("eq", "r1") and "ssm_state" in arm.hooks


def test_a_spec_naming_shipped_checkpoints_resolves_them(monkeypatch):
    monkeypatch.chdir(ROOT)
    spec = load_spec(ROOT / "probes" / "goal_arm.toml")
    paths = resolve_checkpoints(spec)
    assert [p.name for p in paths] == list(spec.checkpoints) and all((p / "model.safetensors").exists() for p in paths)
    with pytest.raises(ValueError, match=r"x.toml: key 'checkpoints': gpt-nxt: not a checkpoint directory nor a shipped checkpoint; shipped: gpt-"):
        resolve_checkpoints(ProbeSpec(checkpoints=("gpt-nxt",), source="x.toml"))


@pytest.mark.parametrize(("line", "key"), [
    ('positons = ["eq"]', "positons"),
    ('positions = "eq"', "positions"),
    ('positions = ["eq", "r0"]', "positions"),
    ('targets = ["arms"]', "targets"),
    ("n_train = 0", "n_train"),
    ('controls = "yes"', "controls"),
    ("[hooks]\ngpt = [\"embed\"]", "hooks"),
])
def test_a_bad_spec_names_the_file_and_the_key(tmp_path, line, key):
    file = tmp_path / "bad.toml"
    file.write_text(f'checkpoints = ["ckpt"]\n{line}\n')
    with pytest.raises(ValueError) as error:
        load_spec(file)
    message = str(error.value)
    assert str(file) in message and repr(key) in message and "\n" not in message


def test_spec_errors_for_missing_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="no models to probe"):
        ProbeSpec(positions=("eq",))
    spec = ProbeSpec(checkpoints=("runs/default/checkpoints/gpt-*",), source="x.toml")
    with pytest.raises(ValueError, match=r"x.toml: key 'checkpoints': .* matches no checkpoint directory .*current directory"):
        resolve_checkpoints(spec)


def test_probe_command_runs_a_spec_with_overrides(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # relative paths in a spec are read from the current directory
    train(tiny_config(steps=4, eval_every=4, save_every=4), tmp_path / "models" / "tiny", progress=False)
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('description = "tiny"\ncheckpoints = ["models/*"]\nhooks = ["resid_post", "ssm_state"]\n'
                         'positions = ["eq", "r1"]\ntargets = ["arm", "goal"]\nn_train = 3000\nout = "out"\n')
    cli_main(["probe", "--spec", str(spec_file), "--n-train", "200", "--n-test", "100", "--no-controls", "--jobs", "1"])
    table = pd.read_csv(tmp_path / "out" / "probes.csv")
    assert len(table) == 1 * 2 * 2  # one layer (the GPT has no SSM state: skipped) x positions x targets
    assert set(table["n_train"]) == {200} and table["control_accuracy"].isna().all()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["probe_arm.png", "probe_goal.png"]
    written = load_spec(tmp_path / "out" / "spec.toml")  # the spec as run, overrides included
    assert written.n_train == 200 and written.controls is False and written.checkpoints == ("models/*",)
    assert set(KEYS) >= {"checkpoints", "hooks", "positions", "targets", "controls", "n_train", "n_test", "seed", "out"}
    assert "wrote" in capsys.readouterr().out

    spec_file.write_text('checkpoints = ["models/*"]\nposition = ["eq"]\n')
    with pytest.raises(SystemExit):
        cli_main(["probe", "--spec", str(spec_file)])
    assert f"{spec_file}: unknown key 'position'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["probe"])
    assert "--spec" in capsys.readouterr().err
