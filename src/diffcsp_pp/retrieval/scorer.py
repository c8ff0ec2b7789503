"""Template scorers: which candidate's structure is most likely to fit the query (METHOD §7.2).

Two rankers, both on the standardised Magpie composition fingerprints of the index:

- ``"mlp"``: the CSPML-style pair classifier. Input ``|f_query - f_template|``; MLP
  132 -> 50 -> 50 -> 50 -> 2 with ReLU and dropout 0.2 after the first two hidden layers; softmax,
  the probability of class 0 ("same structure type") is the score. Trained with cross-entropy on
  pairs labelled positive when the Euclidean distance between the two crystals' structure
  fingerprints (:mod:`.fingerprints`) is <= 0.3 (:func:`train_scorer`).
- ``"euclidean"``: the baseline, score = minus the Euclidean distance of the fingerprints.

Ranking (:meth:`Scorer.rank`): by score; with ``exact_first`` (recorded in the JSON, default true)
candidates with exactly the query's composition come first. Which ranker a model uses is decided on
validation data (:func:`~.train.fit_scorer`). On Perov-5 the plain MLP order wins: the split puts
a test material's A/B-swapped twin (same composition, other structure) into training, so an
identical-composition template is usually the wrong one there.

Files (no pickle): ``template_scorer.json`` (which ranker is used, the MLP's shape, how it was
trained and the validation comparison) and, for an MLP, ``template_scorer.safetensors``.
A model folder without ``template_scorer.json`` ranks with ``"euclidean"``.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .fingerprints import COMP_DIM, POSITIVE_CUTOFF

SCORER_JSON = "template_scorer.json"
SCORER_WEIGHTS = "template_scorer.safetensors"
#: Standardised-fingerprint distance below which two compositions count as identical (the index
#: stores float16 fingerprints: identical compositions differ by ~1e-3).
EXACT_TOL = 0.05


class PairMLP(nn.Module):
    """132 -> 50 -> 50 -> 50 -> 2 (ReLU; dropout after the first two hidden layers)."""

    def __init__(self, input_dim: int = COMP_DIM, hidden: int = 50, dropout: float = 0.2):
        super().__init__()
        self.input_dim, self.hidden, self.dropout = input_dim, hidden, dropout
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, diff: torch.Tensor) -> torch.Tensor:
        """Logits [n, 2] of |Δ fingerprint| [n, d]."""
        return self.net(diff)

    @torch.no_grad()
    def similarity(self, diff: np.ndarray) -> np.ndarray:
        """P(class 0) [n] for |Δ fingerprint| [n, d] (eval mode)."""
        was = self.training
        self.eval()
        logits = self(torch.as_tensor(np.asarray(diff, dtype=np.float32)))
        self.train(was)
        return torch.softmax(logits, -1)[:, 0].double().numpy()


class Scorer:
    """Scores candidates (higher = better) with ``kind`` ``"mlp"`` or ``"euclidean"``."""

    def __init__(self, kind: str = "euclidean", mlp: PairMLP | None = None, info: dict | None = None,
                 exact_first: bool = True):
        if kind not in ("mlp", "euclidean"):
            raise ValueError(f"unknown scorer kind {kind!r}")
        if kind == "mlp" and mlp is None:
            raise ValueError("an 'mlp' scorer needs its network")
        self.kind, self.mlp, self.info, self.exact_first = kind, mlp, dict(info or {}), bool(exact_first)

    def rank(self, query: np.ndarray, templates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(order best first, scores) of templates [m, d] for a query [d].

        With ``exact_first`` (the default) templates with the query's own composition
        (fingerprint distance < ``EXACT_TOL``) come first whatever the scorer says (the MLP never
        sees Δ = 0 in training, so it need not rank an identical composition first); then by
        decreasing score; ties keep the index order. Without it: by decreasing score only.
        """
        templates = np.asarray(templates, dtype=np.float64)
        scores = self.scores(query, templates)
        if not self.exact_first:
            return np.argsort(-scores, kind="stable"), scores
        exact = np.linalg.norm(templates - np.asarray(query, dtype=np.float64)[None, :], axis=-1) < EXACT_TOL
        return np.lexsort((-scores, ~exact)), scores

    def scores(self, query: np.ndarray, templates: np.ndarray) -> np.ndarray:
        """[m] scores of templates [m, d] for one query fingerprint [d] (both standardised)."""
        templates = np.asarray(templates, dtype=np.float64)
        diff = np.abs(templates - np.asarray(query, dtype=np.float64)[None, :])
        if self.kind == "euclidean":
            return -np.linalg.norm(diff, axis=-1)
        return self.mlp.similarity(diff)

    # ------------------------------------------------------------------------------- files
    def save(self, folder: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        from ..atomic import atomic_path, write_json_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        payload = {"kind": self.kind, "exact_first": self.exact_first, **self.info}
        if self.mlp is not None:
            payload["mlp"] = {"input_dim": self.mlp.input_dim, "hidden": self.mlp.hidden, "dropout": self.mlp.dropout,
                              "layers": [self.mlp.input_dim, self.mlp.hidden, self.mlp.hidden, self.mlp.hidden, 2]}
            with atomic_path(folder / SCORER_WEIGHTS) as tmp:  # world-readable: package data
                save_file({k: v.detach().contiguous() for k, v in self.mlp.state_dict().items()}, tmp)
        write_json_atomic(folder / SCORER_JSON, payload)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Scorer:
        """The scorer of a model folder (``"euclidean"`` when it has no ``template_scorer.json``)."""
        from safetensors.torch import load_file

        from ..errors import DataError

        folder = Path(folder)
        path = folder / SCORER_JSON
        if not path.is_file():
            return cls("euclidean", info={"note": f"no {SCORER_JSON}: Euclidean distance of Magpie fingerprints"})
        try:
            payload = json.loads(path.read_text())
            kind = payload.pop("kind")
            exact_first = bool(payload.pop("exact_first", True))
            shape = payload.get("mlp")
            mlp = None
            if shape is not None and (folder / SCORER_WEIGHTS).is_file():
                mlp = PairMLP(shape["input_dim"], shape["hidden"], shape["dropout"])
                mlp.load_state_dict(load_file(folder / SCORER_WEIGHTS))
                mlp.eval()
            return cls(kind, mlp, payload, exact_first)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise DataError(f"cannot load the template scorer in {folder}: {err}") from None


# ------------------------------------------------------------------------------------ training
def sample_pairs(groups: Sequence[int], fingerprints: np.ndarray, num_pairs: int, rng: np.random.Generator,
                 balance: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j), i != j, of crystals with the same count key (the pairs retrieval ranks).

    Args:
        groups: [n] group id (count key) per crystal.
        fingerprints: [n, 244] structure fingerprints (rows with NaN are never drawn).
        num_pairs: pairs to return (at most); with ``balance`` half positive, half negative when
            the data allow (the rest filled from the other class).

    Returns:
        (i [P], j [P], label [P] with 1 = positive = structure-fingerprint distance <= 0.3).
    """
    ok = ~np.isnan(fingerprints).any(1)
    members: dict[int, list[int]] = defaultdict(list)
    for idx in np.nonzero(ok)[0]:
        members[int(groups[idx])].append(int(idx))
    pools = [np.array(v) for v in members.values() if len(v) > 1]
    if not pools:
        raise ValueError("no two crystals share a count pattern: no pairs to train on")
    weights = np.array([len(p) for p in pools], dtype=np.float64) ** 2
    weights /= weights.sum()
    draws = max(4 * num_pairs, 1000)
    which = rng.choice(len(pools), size=draws, p=weights)
    i = np.empty(draws, dtype=np.int64)
    j = np.empty(draws, dtype=np.int64)
    for g in np.unique(which):
        sel = which == g
        pool = pools[g]
        a = rng.integers(len(pool), size=sel.sum())
        b = (a + rng.integers(1, len(pool), size=sel.sum())) % len(pool)  # b != a
        i[sel], j[sel] = pool[a], pool[b]
    dist = np.concatenate([np.linalg.norm(fingerprints[i[c : c + 50_000]] - fingerprints[j[c : c + 50_000]], axis=-1)
                           for c in range(0, draws, 50_000)])  # chunked: bounded memory
    label = (dist <= POSITIVE_CUTOFF).astype(np.int64)
    if balance:
        pos, neg = np.nonzero(label == 1)[0], np.nonzero(label == 0)[0]
        half = num_pairs // 2
        take_pos = min(len(pos), max(half, num_pairs - len(neg)))
        take_neg = min(len(neg), num_pairs - take_pos)
        keep = np.concatenate([pos[:take_pos], neg[:take_neg]])
    else:
        keep = np.arange(min(num_pairs, draws))
    keep = rng.permutation(keep)
    return i[keep], j[keep], label[keep]


def train_scorer(train_features: np.ndarray, train_pairs, val_features: np.ndarray, val_pairs,
                 epochs: int = 40, batch_size: int = 1024, lr: float = 1e-3, seed: int = 0,
                 progress: bool = False) -> tuple[PairMLP, dict]:
    """Train the pair MLP (Adam, cross-entropy); keep the epoch with the best validation accuracy.

    Args:
        train_features / val_features: standardised composition fingerprints [n, 132].
        train_pairs / val_pairs: (i, j, label) from :func:`sample_pairs` (indices into the features).

    Returns:
        (the best network in eval mode, a summary dict).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_tr = torch.as_tensor(np.abs(train_features[train_pairs[0]] - train_features[train_pairs[1]]), dtype=torch.float32)
    y_tr = torch.as_tensor(1 - train_pairs[2])  # class 0 = positive ("same structure type")
    x_va = np.abs(val_features[val_pairs[0]] - val_features[val_pairs[1]])
    y_va = val_pairs[2]
    model = PairMLP(train_features.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    best, best_state, history = -1.0, None, []
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_tr), generator=gen)
        total = 0.0
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        acc = float(((model.similarity(x_va) >= 0.5).astype(int) == y_va).mean())
        history.append({"epoch": epoch + 1, "train_loss": total / len(order), "val_accuracy": acc})
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
        if progress:
            print(f"epoch {epoch + 1}: loss {total / len(order):.4f}, val accuracy {acc:.4f}", flush=True)
    model.load_state_dict(best_state)
    model.eval()
    summary = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": "Adam", "loss": "cross-entropy",
               "train_pairs": int(len(y_tr)), "train_positive_fraction": float(train_pairs[2].mean()),
               "val_pairs": int(len(y_va)), "val_positive_fraction": float(y_va.mean()),
               "best_val_accuracy": best, "best_epoch": int(np.argmax([h["val_accuracy"] for h in history]) + 1),
               "train_time_s": round(time.perf_counter() - start, 1), "history": history}
    return model, summary


def pair_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Accuracy at a threshold (score >= threshold -> positive) and ROC AUC."""
    from scipy.stats import rankdata

    labels = np.asarray(labels)
    pos = labels == 1
    ranks = rankdata(scores)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    auc = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg) if n_pos and n_neg else float("nan")
    return {"accuracy": float(((scores >= threshold) == pos).mean()), "auc": float(auc), "threshold": float(threshold)}


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising accuracy (for the Euclidean baseline, fitted on training pairs)."""
    order = np.argsort(-scores)
    s, y = scores[order], np.asarray(labels)[order]
    # predicting the top m as positive: correct = positives among top m + negatives below
    tp = np.concatenate([[0], np.cumsum(y)])
    neg_below = (len(y) - y.sum()) - (np.arange(len(y) + 1) - tp)
    m = int(np.argmax(tp + neg_below))
    if m == 0:
        return float(s[0]) + 1e-9
    return float(s[m - 1]) if m == len(s) else float((s[m - 1] + s[m]) / 2)
