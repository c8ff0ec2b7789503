"""Template scorer: safetensors roundtrip, pair sampling, training, and identical compositions first."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffcsp_pp.retrieval.scorer import (SCORER_JSON, SCORER_WEIGHTS, PairMLP, Scorer, best_threshold, pair_metrics,
                                         sample_pairs, train_scorer)


def test_mlp_roundtrip_safetensors(tmp_path):
    torch.manual_seed(0)
    scorer = Scorer("mlp", PairMLP(132), {"note": "test"})
    scorer.save(tmp_path)
    from safetensors.torch import load_file

    assert set(load_file(tmp_path / SCORER_WEIGHTS)) == {k for k in scorer.mlp.state_dict()}
    meta = json.loads((tmp_path / SCORER_JSON).read_text())
    assert meta["kind"] == "mlp" and meta["mlp"]["layers"] == [132, 50, 50, 50, 2]
    back = Scorer.load(tmp_path)
    q, t = np.random.default_rng(0).normal(size=(2, 6, 132))
    assert np.allclose(back.scores(q[0], t), scorer.scores(q[0], t))
    assert back.exact_first
    assert Scorer.load(tmp_path / "none").kind == "euclidean"  # no scorer file: the baseline
    Scorer("mlp", scorer.mlp, exact_first=False).save(tmp_path / "plain")
    assert not Scorer.load(tmp_path / "plain").exact_first


def test_trained_mlp_ranks_identical_composition_first():
    """Synthetic data: crystals of the same 'structure type' have nearby fingerprints."""
    rng = np.random.default_rng(0)
    types = rng.integers(4, size=400)
    centres = rng.normal(size=(4, 132)) * 2
    feats = centres[types] + 0.3 * rng.normal(size=(400, 132))
    sfp = np.eye(4)[types] + 0.01 * rng.normal(size=(400, 4))  # structure fingerprints: 0 or ~1.4 apart
    groups = np.zeros(400, dtype=int)
    pairs = sample_pairs(groups, sfp, 4000, rng)
    assert 0.4 < pairs[2].mean() < 0.6  # balanced
    assert np.all(pairs[0] != pairs[1])
    val = sample_pairs(groups, sfp, 1000, rng)
    mlp, summary = train_scorer(feats, pairs, feats, val, epochs=8, batch_size=256)
    assert summary["best_val_accuracy"] > 0.9 and summary["train_pairs"] == 4000
    scorer = Scorer("mlp", mlp)
    query = feats[5]
    templates = np.concatenate([feats[:5], query[None], feats[6:50]])
    assert scorer.rank(query, templates)[0][0] == 5  # the identical composition first
    assert Scorer("euclidean").rank(query, templates)[0][0] == 5
    order, scores = scorer.rank(query, templates)
    assert np.all(np.diff(scores[order[1:]]) <= 0)  # then by decreasing score
    plain, _ = Scorer("mlp", mlp, exact_first=False).rank(query, templates)
    assert np.all(np.diff(scores[plain]) <= 0)  # the plain MLP order: by score only
    same_type = np.nonzero(types[:50] == types[5])[0]
    assert set(order[1:len(same_type)].tolist()) <= set(same_type.tolist())  # same structure type next


def test_pair_metrics_and_threshold():
    scores = np.array([0.9, 0.8, 0.3, 0.1])
    labels = np.array([1, 1, 0, 0])
    thr = best_threshold(scores, labels)
    assert 0.3 < thr <= 0.8
    m = pair_metrics(scores, labels, thr)
    assert m["accuracy"] == 1.0 and m["auc"] == 1.0
    with pytest.raises(ValueError, match="no two crystals"):
        sample_pairs(np.arange(3), np.zeros((3, 4)), 10, np.random.default_rng(0))
