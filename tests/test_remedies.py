"""The causal remedies as objectives, each checked on the literal G(2,3) example of
``workbench.task`` (2,8|5,2|5,9|9,3/5,8=5,2,8): its batch, its loss against a hand
computation, its parameters, and exact resume."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import tiny_config, tiny_mamba_config
from test_task import hand_graph
import workbench
from workbench.factory import build_model_and_parts
from workbench.config import RunConfig, apply_overrides
from workbench.datasets import evaluation_graphs
from workbench.evaluate import evaluate, predictions
from workbench.models import final_norm, forward_with_residual, residual_to_logits
from workbench.objectives import OBJECTIVES, get_objective, objective_class, step_generator
from workbench.objectives.future_bow import future_bags
from workbench.task import generate
from workbench.train import structured_samples, train, trainable

PROMPT = [2, 8, 10, 5, 2, 10, 5, 9, 10, 9, 3, 12, 5, 8, 11]  # 15 tokens, '=' at 14
FILLER = 13
NEW = ["mtp", "token_dropout", "future_bow", "nextlat"]


def model_and_parts(objective: str, **params):
    config = apply_overrides(tiny_config(objective), [f"objective.{k}={v}" for k, v in params.items()])
    return config, *build_model_and_parts(config)


# --- the unit -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OBJECTIVES)
def test_loss_terms_sum_to_the_total_and_positions_are_logged_in_path_order(name):
    config, model, parts = model_and_parts(name)
    data = hand_graph()
    objective = get_objective(name)
    batch = objective.training_batch(data, step_generator(0, 0))
    out = objective.loss(model, parts, batch, data.spec)
    assert out.total.ndim == 0 and out.position_loss.shape == (3,)
    torch.testing.assert_close(sum(out.terms.values()), out.total)
    # every position's own cross-entropy, in path order, whatever the emission order
    logits = model(objective.inputs(data.prompt_tokens(), objective.targets(data.answer_tokens()), data.spec))[0, 14:17]
    clean = F.cross_entropy(logits, objective.targets(data.answer_tokens())[0], reduction="none")
    if name not in ("token_dropout", "mlm_u", "masked_diffusion"):  # training inputs corrupted / masked
        torch.testing.assert_close(out.position_loss, objective.to_path_order(clean[None])[0])


@pytest.mark.parametrize("name", OBJECTIVES)
@pytest.mark.parametrize("n_layers", [1, 2])
def test_loss_from_the_rows_it_reads_equals_the_full_forwards(name, n_layers):
    """Training asks the GPT only for the rows its loss reads (``first``); with a hook
    attached the model runs every row (the ordinary call, sliced). Every term, each logged
    position and every gradient must agree up to rounding, under every objective."""
    config = apply_overrides(tiny_config(name), [f"model.n_layers={n_layers}"])
    model, parts = build_model_and_parts(config)
    objective = get_objective(name, config.objective_params)
    data = generate(config.task.graph, 16, seed=1)
    batch = objective.training_batch(data, step_generator(0, 0))

    def run(hooked: bool):
        model.zero_grad()
        if parts is not None:
            parts.zero_grad()
        with model.hooks(fwd_hooks=[("hook_embed", lambda tensor, hook: tensor)] if hooked else []):
            out = objective.loss(model, parts, batch, data.spec)
        out.total.backward()
        return out, {n: p.grad.clone() for n, p in trainable(model, parts) if p.grad is not None}

    (trimmed, trimmed_grads), (full, full_grads) = run(False), run(True)
    assert trimmed.terms.keys() == full.terms.keys()
    for term in full.terms:
        torch.testing.assert_close(trimmed.terms[term], full.terms[term], rtol=1e-5, atol=1e-6, msg=term)
    torch.testing.assert_close(trimmed.position_loss, full.position_loss, rtol=1e-5, atol=1e-6)
    assert trimmed_grads.keys() == full_grads.keys()
    for parameter, grad in full_grads.items():
        torch.testing.assert_close(trimmed_grads[parameter], grad, rtol=1e-4, atol=1e-6, msg=parameter)


@pytest.mark.parametrize("name, params", [("mlm_u", []), ("mlm_u", ["objective.goal_slot=false"]), ("masked_diffusion", [])])
def test_masked_loss_reads_the_logits_at_eq_and_the_slots_after_it(name, params):
    """The masked objectives' loss against the full forward indexed at sequence positions:
    answer token k is read at '=' + k, its loss averaged where it was masked."""
    config = apply_overrides(tiny_config(name), params)
    model, parts = build_model_and_parts(config)
    objective = get_objective(name, config.objective_params)
    spec = config.task.graph
    batch = objective.training_batch(generate(spec, 16, seed=1), step_generator(0, 3))
    out = objective.loss(model, parts, batch, spec)
    logits = model(batch["inputs"])[:, spec.eq_position : spec.eq_position + spec.path_length].float()
    losses = F.cross_entropy(logits.transpose(1, 2), batch["targets"], reduction="none")
    masked = batch["masked"].float()
    assert masked.sum() > 0
    torch.testing.assert_close(out.position_loss, (losses * masked).sum(0) / masked.sum(0).clamp_min(1.0), rtol=1e-5, atol=1e-6)


def test_term_gradients_add_up_to_the_gradient_of_the_training_loss():
    config, model, parts = model_and_parts("mtp", k=3)
    data = hand_graph()
    objective = get_objective("mtp", config.objective_params)
    out = objective.loss(model, parts, objective.training_batch(data, step_generator(0, 0)), data.spec)
    params = list(model.parameters()) + list(parts.parameters())
    total = torch.autograd.grad(out.total, params, retain_graph=True, allow_unused=True)
    summed = [torch.zeros_like(p) for p in params]
    for value in out.terms.values():
        for acc, g in zip(summed, torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)):
            if g is not None:
                acc += g
    for a, b in zip(total, summed):
        torch.testing.assert_close(a if a is not None else torch.zeros_like(b), b, rtol=1e-5, atol=1e-7)


def test_objective_parameters_are_typed_stored_and_checked(tmp_path):
    config = apply_overrides(tiny_config("mtp"), ["objective.k=3", "objective.head_weight=0.5"])
    assert config.objective_params.k == 3 and config.objective_params.head_weight == 0.5
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown field 'kk' of objective; expected one of head_weight, k"):
        apply_overrides(config, ["objective.kk=3"])
    with pytest.raises(ValueError, match=r"objective.k=1 \(mtp\): expected a value >= 2"):
        apply_overrides(config, ["objective.k=1"])
    with pytest.raises(ValueError, match="cannot read 'three'"):
        apply_overrides(config, ["objective.k=three"])
    with pytest.raises(ValueError, match="objective.mode='drop'.*dropout, replacement, mixed"):
        apply_overrides(tiny_config("token_dropout"), ["objective.mode=drop"])
    with pytest.raises(ValueError, match="has no parameters"):
        apply_overrides(tiny_config("next_token"), ["objective.k=2"])
    with pytest.raises(ValueError, match="objective.k=4 \\(mtp\\): a G\\(.,3\\) answer has 3 tokens"):
        build_model_and_parts(apply_overrides(config, ["objective.k=4"]))


# --- mtp ------------------------------------------------------------------------------------


def test_mtp_head_o_predicts_the_answer_token_o_ahead_of_its_position():
    objective = get_objective("mtp", objective_class("mtp").Params(k=3))
    spec = hand_graph().spec
    # head 2 reads the goal, '=' and the r1 slot (positions 13, 14, 15) for r1, r2, r3;
    # head 3 reads the source, the goal and '=' (12, 13, 14): '=' predicts r3 three ahead
    assert objective.head_positions(2, spec) == slice(13, 16)
    assert objective.head_positions(3, spec) == slice(12, 15)
    inputs = torch.tensor([PROMPT + [5, 2]])
    for offset in (2, 3):
        positions = range(*objective.head_positions(offset, spec).indices(17))
        fed_then_answer = PROMPT + [5, 2, 8]
        assert [fed_then_answer[p + offset] for p in positions] == [5, 2, 8]
    assert inputs.shape[1] == 17


def test_mtp_loss_is_next_token_plus_each_head_on_its_shifted_targets():
    config, model, parts = model_and_parts("mtp", k=3)
    data = hand_graph()
    objective = get_objective("mtp", config.objective_params)
    batch = objective.training_batch(data, step_generator(0, 0))
    assert batch["inputs"].tolist() == [PROMPT + [5, 2]] and batch["targets"].tolist() == [[5, 2, 8]]
    out = objective.loss(model, parts, batch, data.spec)
    logits, resid, _ = forward_with_residual(model, batch["inputs"])
    next_token = F.cross_entropy(logits[0, 14:17], torch.tensor([5, 2, 8]))
    head2 = F.cross_entropy(residual_to_logits(model, parts["head2"](resid))[0, 13:16], torch.tensor([5, 2, 8]))
    head3 = F.cross_entropy(residual_to_logits(model, parts["head3"](resid))[0, 12:15], torch.tensor([5, 2, 8]))
    torch.testing.assert_close(out.terms["head2"], head2)
    torch.testing.assert_close(out.terms["head3"], head3)
    torch.testing.assert_close(out.total, next_token + head2 + head3)


def test_mtp_heads_are_causal():
    config, model, parts = model_and_parts("mtp", k=2)
    resid = torch.randn(1, 17, 32)
    changed = resid.clone()
    changed[0, 10:] += 1.0
    a, b = parts["head2"](resid), parts["head2"](changed)
    torch.testing.assert_close(a[0, :10], b[0, :10])
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_evaluation_scores_each_mtp_head_on_the_answer_token_it_predicts(tmp_path):
    """With its block zeroed, head o is the next-token head read o - 1 positions early: its
    guess at r_e is the model's guess at r_(e-o+1), so its accuracy on r_e must be that guess
    scored against r_e. Evaluation must find exactly that, and training must log it."""
    config, model, parts = model_and_parts("mtp", k=3)
    objective = get_objective("mtp", config.objective_params)
    with torch.no_grad():
        for head in parts.values():
            for linear in (head.layer.self_attn.out_proj, head.layer.linear2):
                linear.weight.zero_(), linear.bias.zero_()
    data = generate(config.task.graph, 500, seed=3)
    frame = evaluate(model, data, objective, parts=parts).set_index(["metric", "position"])["value"]
    tf_pred = predictions(model, data, objective)["tf_pred"]
    for offset in (2, 3):
        for e in range(offset - 1, 3):  # r_(e+1), read where the next-token head guesses r_(e-offset+2)
            expected = (tf_pred[:, e - offset + 1] == data.path[:, e]).float().mean().item()
            assert frame[(f"head{offset}_accuracy", f"r{e + 1}")] == pytest.approx(expected, abs=1 / len(data))
    assert not evaluate(model, data, objective)["metric"].str.startswith("head").any()  # no parts, no head rows

    config = apply_overrides(config, ["train.steps=10", "train.eval_every=10"])
    trained = train(config, tmp_path / "run", progress=False)
    logged = trained.metrics[-1]["test"]
    held_out = evaluation_graphs(config.task)[: config.train.eval_graphs]
    again = evaluate(trained.model, held_out, objective, parts=trained.parts).set_index(["metric", "position"])["value"]
    for offset in (2, 3):
        assert logged[f"head{offset}_accuracy"] == pytest.approx({f"r{e}": again[(f"head{offset}_accuracy", f"r{e}")] for e in (1, 2, 3)})


# --- token dropout --------------------------------------------------------------------------


def dropout_batch(seed: int = 0, **params):
    objective = get_objective("token_dropout", objective_class("token_dropout").Params(**params))
    return objective.training_batch(hand_graph(), step_generator(seed, 0))


def test_token_dropout_corrupts_only_answer_slots_and_keeps_targets_clean():
    for p, mode in ((0.0, "dropout"), (1.0, "dropout"), (1.0, "replacement"), (1.0, "mixed")):
        batch = dropout_batch(p=p, mode=mode)
        assert batch["inputs"][0, :15].tolist() == PROMPT and batch["targets"].tolist() == [[5, 2, 8]]
        slots = batch["inputs"][0, 15:].tolist()
        if p == 0.0:
            assert slots == [5, 2]
        elif mode == "dropout":
            assert slots == [FILLER, FILLER]
        elif mode == "replacement":
            assert all(0 <= s < 10 for s in slots)
        else:
            assert all(0 <= s < 10 or s == FILLER for s in slots)


def test_token_dropout_under_a_fixed_generator_gives_the_same_batch():
    # pinned: the batch is a pure function of (seed, step), and seeds differ
    assert dropout_batch(0, p=0.5, mode="mixed")["inputs"].tolist() == dropout_batch(0, p=0.5, mode="mixed")["inputs"].tolist()
    from workbench.task import generate

    objective = get_objective("token_dropout", objective_class("token_dropout").Params(p=0.5, mode="mixed"))
    graphs = generate(hand_graph().spec, 64, seed=0)
    a = objective.training_batch(graphs, step_generator(0, 5))["inputs"]
    b = objective.training_batch(graphs, step_generator(0, 6))["inputs"]
    assert not torch.equal(a, b)


@pytest.mark.parametrize("masking", ["independent", "span"])
def test_token_dropout_corrupts_the_share_p_and_spans_are_contiguous(masking):
    objective = get_objective("token_dropout", objective_class("token_dropout").Params(p=0.3, masking=masking))
    mask = objective.corruption_mask(20_000, 6, torch.Generator().manual_seed(0))
    assert abs(mask.float().mean().item() - 0.3) < 0.01
    if masking == "span":
        starts = (mask[:, 1:] & ~mask[:, :-1]).sum(1) + mask[:, 0]
        assert (starts <= 1).all()  # one run of corrupted slots per sequence at most
        assert mask.sum(1).float().var() > 0.5  # lengths vary (Binomial(6, 0.3) has variance 1.26)


# --- future bag of words --------------------------------------------------------------------


def test_future_bow_bags_hold_the_answer_tokens_after_the_next():
    bags = future_bags(torch.tensor([[5, 2, 8]]), 10)
    assert bags.shape == (1, 2, 10)
    assert bags[0, 0].nonzero().flatten().tolist() == [2, 8]  # at '=' (predicting r1): the arm r2..r3
    assert bags[0, 1].nonzero().flatten().tolist() == [8]  # at the r1 slot (predicting r2): r3


def test_future_bow_loss_is_next_token_plus_the_bag_cross_entropy():
    config, model, parts = model_and_parts("future_bow", weight=0.5)
    data = hand_graph()
    objective = get_objective("future_bow", config.objective_params)
    batch = objective.training_batch(data, step_generator(0, 0))
    out = objective.loss(model, parts, batch, data.spec)
    logits, resid, _ = forward_with_residual(model, batch["inputs"])
    bow_logits = parts["bow_head"](final_norm(model, resid[:, 14:16]))
    target = torch.zeros(1, 2, 10)
    target[0, 0, [2, 8]] = 1
    target[0, 1, 8] = 1
    bow = F.binary_cross_entropy_with_logits(bow_logits, target, reduction="sum") / 2 * 0.5
    torch.testing.assert_close(out.terms["bow"], bow)
    torch.testing.assert_close(out.total, F.cross_entropy(logits[0, 14:17], torch.tensor([5, 2, 8])) + bow)


# --- next-latent prediction -----------------------------------------------------------------


@pytest.mark.parametrize("horizon", [1, 2])
def test_nextlat_loss_against_a_hand_rollout(horizon):
    config, model, parts = model_and_parts("nextlat", horizon=horizon, kl_weight=0.5)
    data = hand_graph()
    objective = get_objective("nextlat", config.objective_params)
    batch = objective.training_batch(data, step_generator(0, 0))
    out = objective.loss(model, parts, batch, data.spec)
    logits, resid, embed = forward_with_residual(model, batch["inputs"], embed=True)
    latent, kl = [], []
    for t in (14, 15):  # transitions start at '=' and at the r1 slot (position 16 is the last input)
        h = resid[0, t]
        for j in range(1, horizon + 1):
            if t + j > 16:
                break
            h = parts["transition"](h, embed[0, t + j])
            latent.append((t, j, F.smooth_l1_loss(h, resid[0, t + j].detach())))
            p_target = logits[0, t + j].detach().log_softmax(-1)
            p_pred = residual_to_logits(model, h[None])[0].log_softmax(-1)
            kl.append((t, j, (p_target.exp() * (p_target - p_pred)).sum()))
    by_step = lambda terms, j: torch.stack([v for _, jj, v in terms if jj == j]).mean()  # noqa: E731
    expected_latent = sum(by_step(latent, j) for j in range(1, horizon + 1)) / horizon
    expected_kl = sum(by_step(kl, j) for j in range(1, horizon + 1)) / horizon * 0.5
    torch.testing.assert_close(out.terms["latent"], expected_latent)
    torch.testing.assert_close(out.terms["kl"], expected_kl)


# --- structured samples ---------------------------------------------------------------------


def test_structured_samples_hold_each_graph_once_per_arm():
    samples = structured_samples(hand_graph())
    assert samples.path.tolist() == [[5, 2, 8], [5, 9, 3]]  # arms in the prompt order of their source edges
    assert samples.goal.tolist() == [8, 3]
    prompts = samples.prompt_tokens().tolist()
    assert prompts[0] == PROMPT and prompts[1] == PROMPT[:13] + [3, 11]  # only the goal differs


# --- training: exact resume, parts saved and loaded strictly --------------------------------


@pytest.mark.parametrize(
    "objective, extra",
    [("mtp", ["objective.k=3"]), ("token_dropout", ["objective.mode=mixed", "objective.masking=span"]),
     ("future_bow", []), ("nextlat", ["objective.horizon=2"]), ("next_token", ["train.structured_samples=true"])],
)
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, objective, extra):
    config = apply_overrides(tiny_config(objective, steps=12, eval_every=4, save_every=4, device="cpu"), extra)  # bit-exact resume is a CPU claim
    train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", until_step=6, progress=False)
    train(config, tmp_path / "resumed", progress=False)
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert a.keys() == b.keys()
        for key in a:  # bit-exact: resume on the CPU is the claim
            assert torch.equal(a[key], b[key]), (name, key)
    straight = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    resumed = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [m.get("train") for m in straight] == [m.get("train") for m in resumed]  # the running sums survive the resume


def test_mamba_trains_with_objective_parts_and_they_load_strictly(tmp_path):
    config = apply_overrides(tiny_mamba_config(steps=4, eval_every=4, save_every=4), [])
    raw = config.to_dict()
    raw["objective"], raw["objective_params"] = "mtp", {"k": 2, "head_weight": 1.0}
    config = RunConfig.from_dict(raw)
    checkpoint = train(config, tmp_path / "run", progress=False)
    assert any(k.startswith("objective.head2.") for k in load_file(tmp_path / "run" / "model.safetensors"))
    assert checkpoint.parts is not None and "aux_loss" in checkpoint.metrics[-1]["train"]
    state = load_file(tmp_path / "run" / "model.safetensors")
    from safetensors.torch import save_file

    save_file({k: v for k, v in state.items() if not k.endswith("head2.layer.linear1.bias")}, tmp_path / "run" / "model.safetensors")
    with pytest.raises(workbench.checkpoint.CheckpointError, match=r"mtp objective's parameters .*missing \['head2.layer.linear1.bias'\]"):
        workbench.load(tmp_path / "run")
