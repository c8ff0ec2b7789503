"""The model folder: the one place that knows a trained model's files.

A model folder (a training run directory or a bundled model under ``pretrained/``) holds:

| file | what | written by |
|---|---|---|
| ``config.json`` | the RunConfig: network shape, diffusion, training, **sampler defaults** | training, bundling |
| ``model.safetensors`` | the evaluation weights (never unpickled) | training, bundling |
| ``template_stats.json`` | pattern counts of the training set (:class:`TemplateStats`) | training |
| ``template_index.npz`` | retrieval index of prediction from the formula alone | ``scripts/build_template_index.py`` |
| ``template_scorer.json`` / ``.safetensors`` | the index's ranker | ``scripts/build_template_index.py`` |
| ``training_state.json`` | step, epoch, last validation loss, CPU and wall hours of this run | training |
| ``card.json``, ``README.md`` | documentation (model card) | bundling |

Sampler defaults (Langevin γ, the refinement start of prediction from the formula alone) live in
``config.json`` (``"sampler"``, :class:`~diffcsp_pp.train.config.SamplerDefaults`); the card is
documentation only and never changes what is sampled. Folders written before the ``"sampler"``
section existed are still read: their config gets the official defaults, or, for one release,
the ``step_lr`` / ``formula_diff_ratio`` their card states (with a DeprecationWarning).
Every write is atomic (:mod:`diffcsp_pp.atomic`).

A run started from other weights (``train --init-from``) records in its config what those weights
had been trained for (``init_from_training``); :meth:`ModelFolder.total_training` adds it up, so a
model continued across machines or sessions states its whole training (``segments``: each stage).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from .atomic import write_atomic, write_json_atomic
from .data.template_stats import TemplateStats
from .errors import DataError

#: Bundled models (package data): name -> folder under ``pretrained/``.
BUNDLED = {"mp20-csp": "mp20-csp", "mp20-gen": "mp20-gen", "perov5-csp": "perov5-csp",
           "perov5-csp-small": "perov5-csp-small"}
DEFAULT_CSP = "mp20-csp"
DEFAULT_GEN = "mp20-gen"
PRETRAINED = Path(__file__).parent / "pretrained"

#: training figures that add up over the stages of a model continued with ``--init-from``
TRAINING_TOTALS = ("global_step", "epoch", "cpu_hours", "wall_hours", "wall_time_h")


def combine_training(prior: dict | None, state: dict) -> dict:
    """The training of weights trained as ``state`` says, starting from weights trained as ``prior``
    says: the totals (:data:`TRAINING_TOTALS`) add up, everything else (validation loss, machine) is
    the last stage's, and ``segments`` lists the stages in order (a prior's own segments are kept)."""
    if not prior:
        return dict(state)

    def stage(d: dict) -> dict:
        return {k: d[k] for k in (*TRAINING_TOTALS, "val_loss", "machine") if k in d}

    out = dict(state)
    for key in TRAINING_TOTALS:
        mine, before = state.get(key), prior.get(key)
        if isinstance(mine, (int, float)) and isinstance(before, (int, float)):
            out[key] = before + mine
    out["segments"] = [*(prior.get("segments") or [stage(prior)]), stage(state)]
    return out


def training_of(path: str | os.PathLike) -> dict:
    """All the training behind the weights at ``path`` (a model folder, or a weights file in one);
    {} when nothing says (a bare weights file, a folder that is gone)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        return {}
    try:
        return ModelFolder(folder).total_training()
    except (DataError, OSError, ValueError):  # documentation only: an unreadable folder says nothing
        return {}


#: Sampler keys a card could set before they moved into ``config.json`` (read for one release).
_LEGACY_CARD_KEYS = ("step_lr", "formula_diff_ratio")


class ModelFolder:
    """The files of one model (see the module docstring). Reads are cached per instance."""

    CONFIG = "config.json"
    WEIGHTS = "model.safetensors"
    STATS = "template_stats.json"
    STATE = "training_state.json"
    CARD = "card.json"
    INDEX = "template_index.npz"
    SCORER = "template_scorer.json"
    SCORER_WEIGHTS = "template_scorer.safetensors"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._cache: dict = {}

    def __repr__(self) -> str:
        return f"ModelFolder({str(self.path)!r})"

    @classmethod
    def resolve(cls, name_or_path: str | os.PathLike | None = None, default: str = DEFAULT_CSP) -> ModelFolder:
        """A folder on disk, else a bundled model by name (``None``: ``default``)."""
        name = default if name_or_path is None else name_or_path
        path = Path(name)
        if path.exists():
            return cls(path)
        if str(name) not in BUNDLED:
            raise FileNotFoundError(f"no model at {name!r}: not a run directory, and bundled models are {', '.join(BUNDLED)}")
        path = PRETRAINED / BUNDLED[str(name)]
        if not (path / cls.WEIGHTS).is_file():
            raise FileNotFoundError(f"the bundled model {name!r} is not part of this release yet; pass a run directory")
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # ---------------------------------------------------------------------------------- config
    def config(self):
        """The RunConfig (``config.json``), sampler defaults included."""
        if "config" not in self._cache:
            from .train.config import RunConfig

            path = self.file(self.CONFIG)
            if not path.is_file():
                raise FileNotFoundError(f"no {self.CONFIG} in {self.path}")
            try:
                raw = json.loads(path.read_text())
                if not isinstance(raw, dict):
                    raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
                if "sampler" not in raw:
                    raw["sampler"] = self._legacy_card_sampler()
                self._cache["config"] = RunConfig.from_dict(raw)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                raise DataError(f"{path} is not a valid run config: {err}") from None
        return self._cache["config"]

    def _legacy_card_sampler(self) -> dict:
        """Sampler choices an old folder's card stated (before they moved into config.json)."""
        found = {k: v for k, v in self._read_card(strict=True).items() if k in _LEGACY_CARD_KEYS}
        good = {k: v for k, v in found.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf")
                and (k != "formula_diff_ratio" or v < 1)}
        if len(good) < len(found):  # a card that would silently change the defaults is an error
            bad = {k: v for k, v in found.items() if k not in good}
            raise DataError(f"{self.path / self.CARD} has invalid sampler values {bad} (step_lr: a number >= 0; "
                            "formula_diff_ratio: a number in [0, 1))")
        if good:
            warnings.warn(f"{self.path / self.CARD} sets {', '.join(good)}: sampler defaults now live in "
                          f"{self.CONFIG} under \"sampler\" (the card is documentation); the card's values are used "
                          "for this release only", DeprecationWarning, stacklevel=4)
        return good

    def write_config(self, config) -> Path:
        self._cache.pop("config", None)
        return write_json_atomic(self.file(self.CONFIG), config.to_dict())

    def exists(self) -> bool:
        """Whether the folder holds a model (config and weights)."""
        return self.file(self.CONFIG).is_file() and self.file(self.WEIGHTS).is_file()

    # --------------------------------------------------------------------------------- weights
    def load(self, device: str = "cpu"):
        """(CSPNet in eval mode on ``device``, RunConfig) from the config and the safetensors weights."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from .model.cspnet import CSPNet

        if not self.exists():
            raise FileNotFoundError(f"{self.path} is not a run directory (needs {self.CONFIG} and {self.WEIGHTS})")
        try:
            cfg = self.config()
            model = CSPNet(cfg.model)
            model.load_state_dict(load_file(self.file(self.WEIGHTS), device=str(device)))
        except (ValueError, KeyError, TypeError, RuntimeError, OSError, SafetensorError) as err:
            raise DataError(f"cannot load the model in {self.path}: {err}") from None
        return model.to(device).eval(), cfg

    def write_weights(self, state_dict) -> Path:
        """Write a network's state (tensors) as ``model.safetensors``."""
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        return write_atomic(self.file(self.WEIGHTS), save(state, metadata={"format": "pt"}))

    def weights_bytes(self) -> bytes:
        return self.file(self.WEIGHTS).read_bytes()

    def identity(self) -> dict:
        """Which weights these are: the SHA-256 of ``model.safetensors`` and the training step they
        were taken at (all stages; None when nothing says). Output folders record it, so outputs of
        other weights (a rebundled model of the same name) are never mixed into them."""
        from .data.registry import sha256_uncompressed

        step = self.total_training().get("global_step")
        return {"sha256": sha256_uncompressed(self.file(self.WEIGHTS)),
                "global_step": int(step) if isinstance(step, (int, float)) else None}

    # ----------------------------------------------------------------------------- statistics
    def template_stats(self) -> TemplateStats:
        """Pattern counts of the training data (empty if the folder has none)."""
        if "stats" not in self._cache:
            self._cache["stats"] = TemplateStats.read(self.file(self.STATS))
        return self._cache["stats"]

    def write_template_stats(self, stats: TemplateStats) -> Path:
        self._cache["stats"] = stats
        return stats.write(self.file(self.STATS))

    def training_state(self) -> dict:
        path = self.file(self.STATE)
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_training_state(self, state: dict) -> Path:
        return write_json_atomic(self.file(self.STATE), state)

    def prior_training(self) -> dict:
        """What the weights a run started from (``--init-from``) had been trained for: recorded in
        its config when it started, else read from that folder if it is still there; {} otherwise."""
        if not self.file(self.CONFIG).is_file():
            return {}
        cfg = self.config()
        if cfg.init_from_training:
            return dict(cfg.init_from_training)
        return training_of(cfg.init_from) if cfg.init_from else {}

    def total_training(self) -> dict:
        """All the training behind these weights: a run's ``training_state.json`` combined with
        :meth:`prior_training`, else (a bundled model) the card's ``training``; {} if neither."""
        state = self.training_state()
        if state:
            return combine_training(self.prior_training(), state)
        return dict(self._read_card().get("training") or {})

    # ------------------------------------------------------------------------------ retrieval
    def has_template_index(self) -> bool:
        return self.file(self.INDEX).is_file()

    def require_template_index(self) -> Path:
        """The template index file; FileNotFoundError saying how to build it when the folder has none."""
        path = self.file(self.INDEX)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: prediction from the formula alone needs the model's template index; build it "
                f"with `python scripts/build_template_index.py --model {self.path} --train TRAIN.csv`, or give a "
                "space group")
        return path

    def template_index(self):
        """(TemplateIndex, Scorer) of prediction from the formula alone, loaded once."""
        if "retrieval" not in self._cache:
            from .retrieval.index import TemplateIndex
            from .retrieval.scorer import Scorer

            self._cache["retrieval"] = (TemplateIndex.load(self.require_template_index()), Scorer.load(self.path))
        return self._cache["retrieval"]

    def write_template_index(self, index) -> Path:
        self._cache.pop("retrieval", None)
        return index.save(self.file(self.INDEX))

    def write_scorer(self, scorer) -> None:
        """Write the ranker (a Euclidean one removes the weights of an earlier MLP)."""
        self._cache.pop("retrieval", None)
        if scorer.mlp is None:
            self.file(self.SCORER_WEIGHTS).unlink(missing_ok=True)
        scorer.save(self.path)

    # ------------------------------------------------------------------------------------ card
    def _read_card(self, strict: bool = False) -> dict:
        """The card as a dict ({} without one). A card that is unreadable or not a JSON object is {}
        for documentation, and a DataError when ``strict`` (its values would decide something)."""
        path = self.file(self.CARD)
        try:
            card = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError) as err:
            if strict:
                raise DataError(f"cannot read {path}: {err}") from None
            return {}
        if not isinstance(card, dict):
            if strict:
                raise DataError(f"{path} is not a JSON object")
            return {}
        return card

    def card(self) -> dict:
        """The model card (documentation; a copy: nothing the package does reads it to decide anything)."""
        return json.loads(json.dumps(self._read_card()))

    def write_card(self, card: dict, readme: str | None = None) -> None:
        """Write the model card (and its README.md): used by ``scripts/bundle_model.py`` only."""
        write_json_atomic(self.file(self.CARD), card)
        if readme is not None:
            write_atomic(self.file("README.md"), readme)
