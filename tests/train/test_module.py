"""EMA update rule and the resumable batch sampler."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

from diffcsp_pp.data.batch import EpochBatchSampler
from diffcsp_pp.train.module import ema_update_fn


def test_ema_warmup_rule():
    model = torch.nn.Linear(2, 1, bias=False)
    ema = AveragedModel(model, multi_avg_fn=ema_update_fn(0.999), use_buffers=True)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update_parameters(model)  # first update copies
    assert torch.all(ema.module.weight == 1.0)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update_parameters(model)  # n = 1: decay = min(0.999, 2/11)
    d = 2.0 / 11.0
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), d * 1.0 + (1 - d) * 3.0))
    for _ in range(5000):
        ema.update_parameters(model)
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 3.0))


def test_sampler_order_depends_only_on_seed_and_position():
    pos = {"n": 0}
    s = EpochBatchSampler(23, 5, seed=7, position_fn=lambda: pos["n"])
    assert len(s) == 5
    epoch0 = list(s)
    assert sorted(i for b in epoch0 for i in b) == list(range(23))
    pos["n"] = 5  # epoch 1 starts
    epoch1 = list(s)
    assert epoch1 != epoch0 and sorted(i for b in epoch1 for i in b) == list(range(23))
    pos["n"] = 7  # resumed after 2 batches of epoch 1
    assert list(s) == epoch1[2:]
    ranks = [list(EpochBatchSampler(23, 5, seed=7, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 2
    assert not set(map(tuple, ranks[0])) & set(map(tuple, ranks[1]))


def test_validation_noise_does_not_depend_on_the_training_seed():
    """Validation losses compare across runs: the same weights give the same validation loss
    whatever the run's training seed (only the validation noise seed VAL_SEED is used)."""
    from diffcsp_pp.data.batch import CrystalDataset
    from diffcsp_pp.symmetry import analyze
    from diffcsp_pp.train.config import TrainConfig
    from diffcsp_pp.train.module import DiffCSPModule
    from tests.conftest import load_fixture_structures

    infos = [analyze(s, 0.01, structure_id=m) for m, s in load_fixture_structures("perov_5_test.csv.gz")[:6]]
    batch = CrystalDataset(infos).collate(range(6))
    model_cfg = {"hidden": 16, "num_layers": 1, "num_freqs": 4, "time_dim": 16, "task": "csp"}
    losses = []
    for seed in (42, 7):
        torch.manual_seed(0)  # same initial weights
        module = DiffCSPModule(model_cfg, {}, TrainConfig(seed=seed).__dict__.copy())
        module.ema = None
        losses.append(float(module.validation_terms(batch, 3)["loss"]))
    assert losses[0] == losses[1]
    torch.manual_seed(0)
    module = DiffCSPModule(model_cfg, {}, TrainConfig().__dict__.copy())
    module.ema = None
    assert float(module.validation_terms(batch, 4)["loss"]) != losses[0]  # another batch index: other draws
