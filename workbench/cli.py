"""The ``workbench`` command: thin wrappers over the typed functions of the package.

    workbench data generate --graph 2,5,50 --num-graphs 200000 --seed 0 --out data/train.txt
    workbench data convert data/train.txt data/train.safetensors
    workbench train --preset cpu --objective next_token --graph 2,5,50
    workbench eval gpt-next_token-G2_5_50 --data deg_2_path_5_nodes_50_test_20000.txt   # a shipped checkpoint
    workbench import-reference model.pt --graph 2,5,50 --out runs/paper-model
    workbench probe gpt-next_token-G2_5_50 --out runs/probes
    workbench main                      # the default experiment, end to end, ending with the report
    workbench report runs/default       # rewrite the report from saved tables and figures
    workbench inspect CKPT [CKPT ...] --out DIR   # cheat test, edge lookup, goal patching, edge slots of any checkpoints
    workbench findings [--check]        # the docs' tables and figures from the committed results/
    workbench study studies/remedies.toml --subset quick --dry-run   # a grid of runs on Ray
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from typing import TYPE_CHECKING

# Only light modules at the top: `workbench --help` must answer at once, so torch,
# TransformerLens and pandas are imported inside the verbs that need them.
from workbench.config import ARCHS, DEFAULT_JOBS, DEFAULT_OBJECTIVES, PRESETS, PROBE_GRAPHS, apply_overrides, preset_config
from workbench.models.configs import SCANS
from workbench.objectives import OBJECTIVES

if TYPE_CHECKING:
    from workbench.task import GraphSpec


def cmd_data_generate(args: argparse.Namespace) -> None:
    from workbench.data_files import save_data
    from workbench.task import generate

    data = generate(args.graph, args.num_graphs, args.seed)
    save_data(data, args.out)
    print(f"wrote {len(data)} graphs of {args.graph} to {args.out}")


def cmd_data_convert(args: argparse.Namespace) -> None:
    from workbench.data_files import load_data, save_data

    data = load_data(args.source, num_nodes=args.num_nodes)
    save_data(data, args.target)
    print(f"converted {len(data)} graphs of {data.spec}: {args.source} -> {args.target}")


def cmd_train(args: argparse.Namespace) -> None:
    from workbench.datasets import evaluation_graphs
    from workbench.evaluate import evaluate, format_table
    from workbench.train import train

    spec: GraphSpec = args.graph
    task = dict(degree=spec.degree, path_length=spec.path_length, num_nodes=spec.num_nodes)
    config = preset_config(args.preset, objective=args.objective, arch=args.arch, **task)
    overrides = list(args.set)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.train_file:
        overrides.append(f"task.train_file={args.train_file}")
    if args.test_file:
        overrides.append(f"task.test_file={args.test_file}")
    config = apply_overrides(config, overrides)
    from workbench.identity import run_name

    out = Path(args.out or Path("runs") / run_name(config.arch, config.objective, graph=spec, seed=config.train.seed))
    print(f"run {out}: {config.arch} ({args.preset}) / {config.objective} / {spec}, {config.train.steps} steps")
    checkpoint = train(config, out, resume=not args.no_resume, until_step=args.until_step, progress=not args.no_progress)
    test = evaluation_graphs(config.task)
    frame = evaluate(checkpoint.model, test, checkpoint.objective, parts=checkpoint.parts)  # on the device it trained on
    print(f"\nheld-out graphs ({len(test)}), step {checkpoint.step}:\n{format_table(frame)}")
    print(f"checkpoint: {out}")


def cmd_eval(args: argparse.Namespace) -> None:
    import pandas as pd

    from workbench.shipped import load
    from workbench.data_files import load_data
    from workbench.evaluate import evaluate, format_table
    from workbench.datasets import evaluation_graphs
    from workbench.identity import row_identity

    frames = []
    for path in args.checkpoints:
        checkpoint = load(path, device=args.device)
        sets = [(str(f), load_data(f, num_nodes=args.num_nodes)) for f in args.data] or [("held-out", evaluation_graphs(checkpoint.config.task))]
        for name, data in sets:
            if data.spec != checkpoint.graph:
                raise ValueError(f"{name} holds {data.spec} graphs, but {path} was trained on {checkpoint.graph}")
            frame = evaluate(checkpoint.model, data, checkpoint.objective, batch_size=args.batch_size, device=args.device, parts=checkpoint.parts)
            print(f"{path} on {name} ({len(data)} graphs), step {checkpoint.step}:\n{format_table(frame)}\n")
            config = checkpoint.config
            identity = dict(checkpoint=str(path), **row_identity(config, checkpoint.step, graph=data.spec), data=name)
            frames.append(frame.assign(**identity)[[*identity, *frame.columns]])
    if args.csv:
        pd.concat(frames).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")


def cmd_import_reference(args: argparse.Namespace) -> None:
    from workbench.reference_import import import_reference

    out = args.out or Path("runs") / f"paper-{Path(args.file).stem}"
    checkpoint = import_reference(args.file, args.graph, out, objective=args.objective, n_heads=args.n_heads)
    print(f"imported {args.file} -> {out} ({checkpoint.config.model})")


def cmd_export_hf(args: argparse.Namespace) -> None:
    from workbench.shipped import load

    checkpoint = load(args.checkpoint)
    if checkpoint.config.arch == "mamba":
        from workbench.models.mamba_hf import to_hf
    else:
        from workbench.models.gpt_hf import to_hf
    hf = to_hf(checkpoint.model)
    hf.save_pretrained(args.out)
    print(f"wrote a {type(hf).__name__} to {args.out}")


def cmd_import_hf(args: argparse.Namespace) -> None:
    """A local save_pretrained directory (MambaForCausalLM or GPT2LMHeadModel) -> a checkpoint."""
    import json
    from dataclasses import replace

    from workbench.factory import build_model_and_parts

    from workbench.checkpoint import save_checkpoint
    from workbench.config import RunConfig, TaskConfig

    spec: GraphSpec = args.graph
    config_file = Path(args.hf_dir) / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file}: not found; expected a directory written by save_pretrained")
    model_type = json.loads(config_file.read_text()).get("model_type")
    task = TaskConfig(degree=spec.degree, path_length=spec.path_length, num_nodes=spec.num_nodes)
    preset = f"imported:{Path(args.hf_dir).name}"
    if model_type == "mamba":
        from workbench.models.mamba_hf import from_hf, load_hf_dir

        model = from_hf(load_hf_dir(args.hf_dir))
        vocab = model.backbone.embeddings.num_embeddings
        config = RunConfig(arch="mamba", objective=args.objective, preset=preset, task=task, model=replace(model.cfg, scan=args.scan))
    elif model_type == "gpt2":
        from workbench.models.gpt_hf import gpt_config_from_hf, load_hf_dir, state_dict_from_hf

        hf = load_hf_dir(args.hf_dir)
        config = RunConfig(arch="gpt", objective=args.objective, preset=preset, task=task, model=gpt_config_from_hf(hf.config))
        model, _ = build_model_and_parts(config)
        if model.cfg.n_ctx != hf.config.n_positions:
            raise ValueError(f"{config_file}: n_positions {hf.config.n_positions}, but {spec} under {args.objective} needs {model.cfg.n_ctx} positions")
        vocab = hf.config.vocab_size
        if vocab == model.cfg.d_vocab:
            model.load_state_dict(state_dict_from_hf(hf), strict=True)
    else:
        raise ValueError(f"{config_file}: model_type {model_type!r}; import-hf reads 'mamba' (MambaForCausalLM) and 'gpt2' (GPT2LMHeadModel)")
    if vocab != spec.vocab_size:
        raise ValueError(f"{args.hf_dir}: vocabulary of {vocab}, but {spec} needs N+4 = {spec.vocab_size}")
    save_checkpoint(args.out, config, model, step=0, metrics=[])
    print(f"imported {args.hf_dir} -> {args.out}")


def cmd_probe(args: argparse.Namespace) -> None:
    from workbench.probes.spec import ProbeSpec, load_spec, run_spec

    given = dict(
        checkpoints=args.checkpoints or None, hooks=_csv_list(args.hooks), positions=_csv_list(args.positions),
        targets=_csv_list(args.targets), data=args.data, num_nodes=args.num_nodes, n_train=args.n_train, n_test=args.n_test,
        seed=args.seed, controls=args.controls, cache=args.cache, device=args.device, jobs=args.jobs, out=args.out,
    )
    given = {key: value for key, value in given.items() if value is not None}  # flags left out keep the spec's values
    if args.spec:
        spec = load_spec(args.spec).override(given)
    elif not args.checkpoints:
        raise ValueError("probe: give checkpoint directories, or --spec FILE (see probes/README.md)")
    else:
        spec = ProbeSpec(**{key: tuple(value) if isinstance(value, list) else value for key, value in given.items()})
    run_spec(spec)


def _csv_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def cmd_main(args: argparse.Namespace) -> None:
    from workbench.main_job import default_configs, run_main_job

    if args.archs or args.objectives:
        jobs = tuple((a, o) for a in args.archs or ARCHS for o in args.objectives or DEFAULT_OBJECTIVES)
    else:
        jobs = DEFAULT_JOBS
    configs = default_configs(jobs, args.graph, tuple(args.set))
    run_main_job(Path(args.out), configs, seed_reference=not args.no_seed_reference, probes=not args.no_probes,
                 analyses=not args.no_analyses, progress=not args.no_progress, results_dir=args.results)


def cmd_report(args: argparse.Namespace) -> None:
    from workbench.analyses.report import write_report

    print(f"wrote {write_report(args.run_dir)}")


def cmd_study(args: argparse.Namespace) -> None:
    from workbench.study import dry_run, load_study, run_study

    study = load_study(args.spec)
    out = Path(args.out or Path("runs") / "studies" / study.name)
    if args.calibrate is not None and not args.dry_run:
        raise SystemExit("error: --calibrate goes with --dry-run (it times steps to estimate; a real run measures its own rate)")
    if args.calibrate is not None and args.calibrate < 1:
        raise SystemExit(f"error: --calibrate {args.calibrate}: expected a number of steps >= 1")
    if args.dry_run:
        print("\n".join(dry_run(study, out, args.subset, args.cpus, calibrate_steps=args.calibrate or 0)))
        return
    try:
        run_study(study, out, args.subset, address=args.address, cpus=args.cpus, progress=not args.no_progress, results_dir=args.results)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_inspect(args: argparse.Namespace) -> None:
    from workbench.analyses.inspect import inspect_checkpoints
    from workbench.analyses.patching import plot_patching
    from workbench.shipped import load
    from workbench.files import atomic_write_text

    tables = inspect_checkpoints([load(path, device=args.device) for path in args.checkpoints], args.graphs)
    out = Path(args.out)
    for name, frame in tables.items():
        atomic_write_text(out / f"{name}.csv", frame.to_csv(index=False))
    patched = tables["patching"]
    plot_patching(patched.assign(objective=patched["run"]), out / "patching.png")
    print(f"wrote {', '.join(f'{name}.csv' for name in tables)} and patching.png to {out}")


def cmd_ship(args: argparse.Namespace) -> None:
    from workbench.shipped import ship

    rows = ship(Path(args.checkpoint), args.name, Path(args.results), Path(args.store))
    print(rows[["name", "step", "weights_sha256", "r2_tf", "path_greedy"]].to_string(index=False))
    print(f"wrote {Path(args.store) / 'manifest.csv'}")


def cmd_findings(args: argparse.Namespace) -> None:
    from workbench.findings import DOCUMENTS, Results, check, render
    from workbench.findings.figures import draw
    from workbench.files import atomic_write_text

    results = Results(args.results)
    documents = [Path(d) for d in args.docs or DOCUMENTS]
    for document in documents:
        if not document.exists():
            raise FileNotFoundError(f"{document}: not found (run `workbench findings` from the repository root, or name the documents with --docs)")
    if args.check:
        stale = [s for document in documents for s in check(document.read_text(), results, document)]
        for item in stale:
            print(item, file=sys.stderr)
        if stale:
            print(f"findings: {len(stale)} generated block(s) differ from {args.results}/; run `workbench findings` to rewrite them", file=sys.stderr)
            raise SystemExit(1)
        print(f"findings: every generated block of {', '.join(map(str, documents))} matches {args.results}/")
        return
    for document in documents:
        text = document.read_text()
        new = render(text, results, document)
        if new != text:
            atomic_write_text(document, new, encoding="utf-8")
        print(f"{document}: {'rewritten' if new != text else 'current'}")
    if not args.no_figures:
        drawn, skipped = draw(results, Path(args.figures))
        for path in drawn:
            print(f"wrote {path}")
        for note in skipped:
            print(f"not drawn: {note}")


def _graph(text: str) -> GraphSpec:
    from workbench.task import GraphSpec

    try:
        return GraphSpec.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    default_graph = "2,5,50"  # argparse runs string defaults through type=_graph

    data = verbs.add_parser("data", help="generate or convert path-star graph files")
    data_verbs = data.add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    gen = data_verbs.add_parser("generate", help="draw graphs from the paper's distribution", description="Write seeded graphs as the paper's .txt format or a .safetensors tensor file (chosen by the suffix of --out).")
    gen.add_argument("--graph", type=_graph, default=default_graph, help="degree,path_length,num_nodes (default 2,5,50)")
    gen.add_argument("--num-graphs", type=int, required=True, help="how many graphs")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--out", required=True, help="output file, .txt (paper format) or .safetensors")
    gen.set_defaults(func=cmd_data_generate)
    conv = data_verbs.add_parser("convert", help="convert between .txt and .safetensors", description="Read a graph file and write it in the format given by the target's suffix.")
    conv.add_argument("source", help="input .txt or .safetensors")
    conv.add_argument("target", help="output .txt or .safetensors")
    conv.add_argument("--num-nodes", type=int, help="number of node labels, when the file name does not say (deg_{d}_path_{l}_nodes_{N}_...)")
    conv.set_defaults(func=cmd_data_convert)

    tr = verbs.add_parser("train", help="train a model from scratch (resumes if --out holds a checkpoint)", description="Train under one objective, evaluating on held-out graphs as it goes; resumes exactly from --out when a checkpoint is there.")
    tr.add_argument("--arch", choices=ARCHS, default="gpt", help="model architecture (default gpt)")
    tr.add_argument("--preset", choices=sorted({p for presets in PRESETS.values() for p in presets}), default="cpu", help="model size and training settings (default cpu; paper-readme is gpt only)")
    tr.add_argument("--objective", choices=sorted(OBJECTIVES), default="next_token", help="training objective (default next_token)")
    tr.add_argument("--graph", type=_graph, default=default_graph, help="degree,path_length,num_nodes (default 2,5,50)")
    tr.add_argument("--seed", type=int, help="training seed: init and batch order (default 0)")
    tr.add_argument("--train-file", help="train on this file (.txt or .safetensors) instead of generated graphs")
    tr.add_argument("--test-file", help="evaluate on this file instead of generated held-out graphs")
    tr.add_argument("--set", nargs="+", action="extend", default=[], metavar="SECTION.FIELD=VALUE", help="override settings, e.g. train.steps=5000 model.n_layers=4 objective.k=3 (sections task, model, train, objective; repeatable)")
    tr.add_argument("--out", help="checkpoint directory (default runs/{arch}-{objective}-G{d}_{l}_{N}-s{seed})")
    tr.add_argument("--until-step", type=int, help="stop (with a resumable checkpoint) at this step; the schedule is unchanged")
    tr.add_argument("--no-resume", action="store_true", help="fail instead of resuming when --out holds a checkpoint")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)

    ev = verbs.add_parser("eval", help="per-position accuracy and loss of checkpoints", description="Teacher-forced and greedy accuracy and teacher-forced loss per answer position r1..rl, and full-path accuracy.")
    ev.add_argument("checkpoints", nargs="+", help="checkpoint directories")
    ev.add_argument("--data", nargs="*", default=[], help="data files (.txt paper format or .safetensors); default: the run's held-out graphs")
    ev.add_argument("--num-nodes", type=int, help="number of node labels, when a file name does not say")
    ev.add_argument("--batch-size", type=int, default=2000)
    ev.add_argument("--device", default="auto", help="where the models run: auto (CUDA where there is one, else the CPU), cpu, cuda, cuda:N, mps (default auto)")
    ev.add_argument("--csv", help="write the tidy results (one row per measurement) to this CSV")
    ev.set_defaults(func=cmd_eval)

    imp = verbs.add_parser("import-reference", help="import a checkpoint saved by the paper's code", description="Convert torch.save(model.state_dict()) of the paper's GPT into a workbench checkpoint (read with weights_only=True).")
    imp.add_argument("file", help="the paper code's .pt state dict")
    imp.add_argument("--graph", type=_graph, required=True, help="degree,path_length,num_nodes the model was trained on")
    imp.add_argument("--objective", choices=sorted(OBJECTIVES), default="next_token", help="objective it was trained with (decides decoding)")
    imp.add_argument("--n-heads", type=int, default=6, help="attention heads (not stored in the file; the paper uses 6)")
    imp.add_argument("--out", help="checkpoint directory (default runs/paper-{file stem})")
    imp.set_defaults(func=cmd_import_reference)

    exp = verbs.add_parser("export-hf", help="write a checkpoint as a Hugging Face model (Mamba: MambaForCausalLM; GPT: GPT2LMHeadModel)",
                           description="save_pretrained of a MambaForCausalLM (same parameter names) or a GPT2LMHeadModel with an untied head "
                           "(names mapped as workbench/models/gpt_hf.py documents) computing the checkpoint's logits. The objective's own parts stay behind.")
    exp.add_argument("checkpoint", help="a checkpoint directory (gpt with causal attention, or mamba)")
    exp.add_argument("--out", required=True, help="output directory")
    exp.set_defaults(func=cmd_export_hf)
    ihf = verbs.add_parser("import-hf", help="import a local Hugging Face MambaForCausalLM or GPT2LMHeadModel directory", description="Turn a save_pretrained MambaForCausalLM or GPT2LMHeadModel directory (local; nothing is downloaded) into a workbench checkpoint.")
    ihf.add_argument("hf_dir", help="directory with config.json and the weights")
    ihf.add_argument("--graph", type=_graph, required=True, help="degree,path_length,num_nodes the model works on")
    ihf.add_argument("--objective", choices=sorted(OBJECTIVES), default="next_token", help="objective it was trained with (decides decoding)")
    ihf.add_argument("--scan", choices=list(SCANS), default="cpp", help="Mamba: the selective-scan implementation to use")
    ihf.add_argument("--out", required=True, help="checkpoint directory")
    ihf.set_defaults(func=cmd_import_hf)

    pr = verbs.add_parser("probe", help="linear probes on checkpoints, with controls", description="Fit a logistic-regression probe for every (checkpoint, hook, position, target) on held-out graphs, with a control task, an untrained model and the embedding as controls; write probes.csv and one heatmap per target.")
    pr.add_argument("checkpoints", nargs="*", help="checkpoint directories (or snapshots); with --spec, they replace the file's checkpoints and runs")
    pr.add_argument("--spec", help="a probe experiment file (TOML, see probes/README.md); flags given beside it override its values")
    pr.add_argument("--hooks", help="comma-separated hook names or shortcuts embed, resid_post, ssm_state (default: embed,resid_post, plus ssm_state for mamba)")
    pr.add_argument("--positions", help="comma-separated positions: eq (the '=' token) and r1..r{l-1} (answer slots) (default eq,r1)")
    pr.add_argument("--targets", help="comma-separated targets: arm, node_r2..node_r{l}, goal, source, on_path (default all)")
    pr.add_argument("--data", help="probe on this graph file instead of the checkpoint's held-out graphs")
    pr.add_argument("--num-nodes", type=int, help="number of node labels, when the --data file name does not say")
    pr.add_argument("--n-train", type=int, help=f"graphs to fit each probe on (default {PROBE_GRAPHS[0]})")
    pr.add_argument("--n-test", type=int, help=f"held-out graphs to score it on (default {PROBE_GRAPHS[1]})")
    pr.add_argument("--seed", type=int, help="seed of CV folds, bootstrap and control tasks (default 0)")
    pr.add_argument("--controls", action=argparse.BooleanOptionalAction, help="the control task and the untrained model beside every probe (default on; --no-controls is about 3x faster)")
    pr.add_argument("--cache", action=argparse.BooleanOptionalAction, help="cache activations under OUT/activation_cache (default on)")
    pr.add_argument("--device", help="where the models run: auto, cpu, cuda, cuda:N, mps (default auto)")
    pr.add_argument("--jobs", type=int, help="worker processes fitting probes (default -1: one per core)")
    pr.add_argument("--out", help="output directory (default runs/probes)")
    pr.set_defaults(func=cmd_probe)

    mj = verbs.add_parser("main", help="the default experiment end to end, ending with the report", description="Train cpu-preset models on G(2,5,50) (or --graph; GPT and Mamba under every objective, 1,500 and 1,000 steps; plus a second seed of the first, for CKA), evaluate them on held-out graphs (results.csv), probe them (probes/), run the analyses (analyses/) and write report.html. Finished stages are reused when run again.")
    mj.add_argument("--out", default="runs/default", help="experiment directory (default runs/default)")
    mj.add_argument("--archs", nargs="+", choices=ARCHS, help="train every objective on these architectures (default: " + ", ".join(f"{a}/{o}" for a, o in DEFAULT_JOBS) + ")")
    mj.add_argument("--objectives", nargs="+", choices=sorted(OBJECTIVES), help=f"objectives to train on every arch (default {' '.join(DEFAULT_OBJECTIVES)})")
    mj.add_argument("--graph", type=_graph, default=default_graph, help="degree,path_length,num_nodes of every run (default 2,5,50)")
    mj.add_argument("--set", nargs="+", action="extend", default=[], metavar="SECTION.FIELD=VALUE", help="override settings of every run, e.g. objective.k=4 model.n_layers=3 (repeatable; a setting an objective lacks is an error)")
    mj.add_argument("--no-seed-reference", action="store_true", help="skip the second-seed run (CKA then has no reference level)")
    mj.add_argument("--no-probes", action="store_true", help="skip the probe stage")
    mj.add_argument("--no-analyses", action="store_true", help="skip the analyses and the report")
    mj.add_argument("--no-progress", action="store_true")
    mj.add_argument("--results", metavar="DIR", help="also publish the tidy tables and their provenance to DIR (e.g. results/main_job, read by `workbench findings`)")
    mj.set_defaults(func=cmd_main)

    st = verbs.add_parser("study", help="run a grid of runs (a study file) as Ray tasks, then its table, figure and report", description="Train, evaluate, probe and patch every run of a study file's grid as Ray tasks (locally by default, or on a cluster with --address), skipping finished runs and resuming interrupted ones; gather OUT/study.csv and write OUT/report.html.")
    st.add_argument("spec", help="study file (TOML), e.g. studies/remedies.toml")
    st.add_argument("--out", help="output folder (default runs/studies/{study name})")
    st.add_argument("--subset", nargs="+", default=[], metavar="KEY=VALUES", help="run part of the grid: KEY=VALUES with KEY in objectives, archs, graphs, presets, overrides, seeds, runs (values of one key are alternatives: seeds=0,1; repeat graphs=2,3,50 graphs=2,5,50), or a named subset of the study file")
    st.add_argument("--dry-run", action="store_true", help="list the runs, their state and estimated times; run nothing")
    st.add_argument("--calibrate", nargs="?", type=int, const=5, metavar="STEPS",
                    help="with --dry-run: first time STEPS (default 5) training steps of each distinct kind of run not yet started, on this machine at the study's threads per run, and estimate from those rates (kept in OUT/calibration.json for later dry runs; put the option after the study file)")
    st.add_argument("--address", help="join this Ray cluster (as started by `ray start --head`); default: $RAY_ADDRESS, else a private Ray on this machine")
    st.add_argument("--cpus", type=int, help="CPUs of the private local Ray (default: all cores)")
    st.add_argument("--no-progress", action="store_true", help="no periodic progress lines (finished runs are still listed)")
    st.add_argument("--results", metavar="DIR", help="when every selected run has finished, also publish their rows, summary and provenance to DIR (e.g. results/solvers, read by `workbench findings`)")
    st.set_defaults(func=cmd_study)

    ins = verbs.add_parser("inspect", help="cheat test, edge-lookup attention, goal patching and r2 by edge slots of any checkpoints",
                           description="The analyses that need no training history, on checkpoints of one graph: the Clever Hans cheat test "
                           "(a wrong arm fed as the answer so far), attention onto the looked-up edge (GPT) and goal patching (move the goal, "
                           "patch clean activations back, layer by layer) and r2's accuracy by the prompt slots of the path's first and last edge. "
                           "Writes cheat_test.csv, edge_lookup.csv, patching.csv, edge_slots.csv and patching.png.")
    ins.add_argument("checkpoints", nargs="+", help="checkpoint directories, all of one graph")
    ins.add_argument("--out", required=True, help="output directory")
    ins.add_argument("--graphs", type=int, default=2_000, help="held-out graphs for the cheat test; patching uses half, the attention a quarter (default 2000)")
    ins.add_argument("--device", default="auto", help="where the models run: auto, cpu, cuda, cuda:N, mps (default auto)")
    ins.set_defaults(func=cmd_inspect)

    sh = verbs.add_parser("ship", help="add a trained run to the reference checkpoints (checkpoints/ and its manifest)",
                          description="Copy a trained run's weights and config into checkpoints/NAME (no optimizer state), evaluate it and its "
                          "untrained twin (same config and seed, step 0) on the paper's test file of its graph, and write both rows of "
                          "checkpoints/manifest.csv; the command, commit and training time come from the job's recorded provenance.")
    sh.add_argument("checkpoint", help="the trained run's checkpoint directory, e.g. runs/default/checkpoints/gpt-next_token")
    sh.add_argument("--name", required=True, help="its manifest name, e.g. gpt-next_token-G2_5_50")
    sh.add_argument("--results", required=True, help="the published job that trained it, e.g. results/main_job (its provenance.json names the run)")
    sh.add_argument("--store", default="checkpoints", help="the checkpoints folder (default checkpoints, in the current directory)")
    sh.set_defaults(func=cmd_ship)

    fi = verbs.add_parser("findings", help="rewrite the docs' tables, numbers and figures from the committed results (or --check them)",
                          description="Rewrite every generated block (<!-- findings:NAME --> ... <!-- /findings:NAME -->) of the documents from the "
                          "results folder's CSVs and provenance, and draw the findings' figures; with --check, change nothing and exit 1 naming "
                          "each block that differs. Run from the repository root.")
    fi.add_argument("--check", action="store_true", help="exit 1 if a generated block differs from what the results give; write nothing")
    fi.add_argument("--results", default="results", help="the results folder (default results)")
    fi.add_argument("--docs", nargs="+", help="documents with generated blocks (default: workbench.findings.DOCUMENTS, README.md and the docs' pages with results)")
    fi.add_argument("--figures", default="docs/figures", help="where the figures go (default docs/figures)")
    fi.add_argument("--no-figures", action="store_true", help="rewrite the documents only")
    fi.set_defaults(func=cmd_findings)

    rep = verbs.add_parser("report", help="write report.html of an experiment directory", description="Build one self-contained HTML page from the tables and figures that `workbench main` wrote into RUN_DIR.")
    rep.add_argument("run_dir", help="experiment directory (as --out of workbench main)")
    rep.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Usage and input errors exit 2 with one line (as argparse's own); Ctrl-C exits 130
    saying what was saved."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as interrupt:
        print(f"\n{interrupt}" if str(interrupt) else "\ninterrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
