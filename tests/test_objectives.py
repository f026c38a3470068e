import pytest
import torch

from test_task import hand_graph
from workbench.objectives import OBJECTIVES, answer_logits, get_objective
from workbench.task import GraphSpec, generate


def build(name):
    data = hand_graph()
    objective = get_objective(name)
    targets = objective.targets(data.answer_tokens())
    return objective, targets, objective.inputs(data.prompt_tokens(), targets, data.spec)


PROMPT = [2, 8, 10, 5, 2, 10, 5, 9, 10, 9, 3, 12, 5, 8, 11]


@pytest.mark.parametrize(
    "name, slots, targets, mask",
    [
        ("next_token", [5, 2], [5, 2, 8], [True, True, True]),
        ("teacherless", [13, 13], [5, 2, 8], [True, True, True]),
        ("reverse", [8, 2], [8, 2, 5], [True, True, True]),
        ("first_decision_only", [5, 2], [5, 2, 8], [False, True, False]),
    ],
)
def test_inputs_targets_and_loss_mask_of_each_objective(name, slots, targets, mask):
    objective, got_targets, inputs = build(name)
    assert inputs.tolist() == [PROMPT + slots]
    assert got_targets.tolist() == [targets]
    assert objective.to_path_order(got_targets).tolist() == [[5, 2, 8]]
    assert objective.loss_mask(GraphSpec(2, 3, 10)).tolist() == mask


def test_answer_logits_are_the_positions_from_eq_on():
    spec = GraphSpec(2, 3, 10)
    logits = torch.arange(17.0)[None, :, None].expand(1, 17, spec.vocab_size)
    assert answer_logits(logits, spec)[0, :, 0].tolist() == [14.0, 15.0, 16.0]


def test_unknown_objective_lists_valid_names():
    with pytest.raises(ValueError, match="next_token"):
        get_objective("nope")


class RandomCausalModel(torch.nn.Module):
    """Logits at each position depend on the tokens up to it (a causal random function)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(64, vocab, generator=torch.Generator().manual_seed(0)))

    def forward(self, tokens):
        prefix_hash = (tokens * 7919).cumsum(dim=1) % 64
        return self.table[prefix_hash]


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_decoding_with_teacher_forced_shortcut_equals_plain_greedy(name):
    spec = GraphSpec(2, 4, 20)
    data = generate(spec, 300, seed=0)
    model, objective = RandomCausalModel(spec.vocab_size), get_objective(name)
    prompt = data.prompt_tokens()
    targets = objective.targets(data.answer_tokens())
    tf_pred = answer_logits(model(objective.inputs(prompt, targets, spec)), spec).argmax(-1)
    plain = objective.decode(model, prompt, spec)
    fast = objective.decode(model, prompt, spec, teacher_forced=(targets, tf_pred))
    assert torch.equal(plain, fast)
