"""Training's numbers are pinned: next_token and reverse at the cpu preset, on a short run,
give the training losses measured at commit b8c12b1 (before the objective redesign). Changes
that should not change the function (the objective redesign, the unhooked training forward,
torch's fused LayerNorm in place of the bridge's formula) must stay within the tolerance: a
CPU other than the measuring one differs in the last bits, and 60 steps of AdamW carry that
along."""

from dataclasses import replace

import pytest

from workbench.config import preset_config
from workbench.train import train

# mean training loss per answer position over steps 31..60 (gpt, cpu preset, 4,096 graphs)
BEFORE = {
    "next_token": {"r1": 1.3540337085723877, "r2": 3.2224957942962646, "r3": 3.2624306678771973, "r4": 3.286479949951172, "r5": 1.4065097570419312},
    "reverse": {"r1": 1.4836496114730835, "r2": 3.2963449954986572, "r3": 3.2731142044067383, "r4": 3.2541816234588623, "r5": 1.4524661302566528},
}


@pytest.mark.parametrize("objective", sorted(BEFORE))
def test_cpu_preset_losses_match_the_pinned_values(tmp_path, objective):
    config = preset_config("cpu", objective=objective, arch="gpt")
    config.task = replace(config.task, num_train=4096, num_test=512)
    config.train = replace(config.train, steps=60, eval_every=30, save_every=60, eval_graphs=512, warmup_steps=10)
    checkpoint = train(config, tmp_path / "run", progress=False)
    assert checkpoint.metrics[-1]["train"]["loss"] == pytest.approx(BEFORE[objective], rel=2e-3)
