"""Typed configs and presets for training (METHOD §6). The CLI maps flags one to one onto fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..diffusion.process import DiffusionConfig
from ..model.cspnet import ModelConfig

#: Per-dataset settings of the paper preset (METHOD §6): max epochs, train batch size, Langevin γ
#: (CSP, generation) and the validation interval in epochs.
PAPER_DATASET = {
    "perov_5": {"max_epochs": 3000, "batch_size": 1024},
    "carbon_24": {"max_epochs": 4000, "batch_size": 256},
    "mp_20": {"max_epochs": 1000, "batch_size": 256},
    "mpts_52": {"max_epochs": 500, "batch_size": 128},
}

#: Model shapes of the presets. ``small`` is the CPU preset (see docs/BENCHMARKS.md).
PRESET_MODELS = {
    "paper": {"hidden": 512, "num_layers": 6, "num_freqs": 128, "time_dim": 256},
    "small": {"hidden": 128, "num_layers": 4, "num_freqs": 128, "time_dim": 256},
}

#: Batch size of the small preset per dataset (CPU).
SMALL_BATCH = {"perov_5": 256, "carbon_24": 64, "mp_20": 64, "mpts_52": 32}

#: Langevin step γ per (dataset, task) (METHOD §4.6, the official evaluation defaults).
STEP_LR = {
    ("perov_5", "csp"): 5e-7, ("carbon_24", "csp"): 5e-6, ("mp_20", "csp"): 1e-5, ("mpts_52", "csp"): 1e-5,
    ("perov_5", "gen"): 1e-6, ("carbon_24", "gen"): 1e-5, ("mp_20", "gen"): 5e-6, ("mpts_52", "gen"): 5e-6,
}
#: Fraction of the T steps that refinement of a retrieved template starts from (METHOD §7.2 item 5).
DIFF_RATIO = 0.1


@dataclass(frozen=True)
class SamplerDefaults:
    """A model's measured sampler choices, stored in its ``config.json`` under ``"sampler"``.

    ``None`` means the official value: ``step_lr`` from :data:`STEP_LR` for the run's dataset and
    task (MP-20's for unknown datasets), ``formula_diff_ratio`` (the refinement start of prediction
    from the formula alone; 0 = the substituted templates unrefined) :data:`DIFF_RATIO`.
    """

    step_lr: float | None = None
    formula_diff_ratio: float | None = None

    def __post_init__(self):
        for name in ("step_lr", "formula_diff_ratio"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"sampler.{name} must be a non-negative number or null, got {value!r}")
        if self.formula_diff_ratio is not None and not self.formula_diff_ratio < 1:
            raise ValueError(f"sampler.formula_diff_ratio must be 0 or in (0, 1), got {self.formula_diff_ratio!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainConfig:
    """Optimisation and run settings."""

    lr: float = 1e-3
    batch_size: int = 256
    val_batch_size: int | None = None
    max_epochs: int = 1000
    max_steps: int = -1
    grad_clip_value: float = 0.5
    ema: bool = True
    ema_decay: float = 0.999
    scheduler: str = "plateau"  # "plateau" (paper), "cosine" or "none"
    plateau_factor: float = 0.6
    plateau_patience: int = 30
    min_lr: float = 1e-4
    val_every_epochs: int = 5
    precision: str = "32-true"  # or "bf16-mixed"
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    seed: int = 42
    checkpoint_every: int = 500
    num_threads: int | None = None
    max_cpu_hours: float | None = None  # stop (with a checkpoint) once the run's CPU time reaches this
    #: linear learning-rate warm-up over the run's first steps (0: none, as in the paper); continuing
    #: trained weights with a fresh Adam (``--init-from``) needs it: Adam's first updates move every
    #: weight by about ``lr`` whatever its gradient, which undoes part of the training
    warmup_steps: int = 0

    def __post_init__(self):
        if self.scheduler not in ("plateau", "cosine", "none"):
            raise ValueError(f"scheduler must be plateau, cosine or none, got {self.scheduler!r}")
        if self.precision not in ("32-true", "bf16-mixed", "32", "bf16"):
            raise ValueError(f"precision must be 32-true or bf16-mixed, got {self.precision!r}")
        for name in ("batch_size", "devices", "num_nodes", "checkpoint_every", "val_every_epochs", "max_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.max_cpu_hours is not None and not self.max_cpu_hours > 0:
            raise ValueError(f"max_cpu_hours must be > 0, got {self.max_cpu_hours}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass
class RunConfig:
    """Everything a run needs; written to ``RUN_DIR/config.json``."""

    task: str
    preset: str
    dataset: str | None
    train_files: list[str]
    val_files: list[str]
    symprec: float | None
    model: ModelConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init_from: str | None = None  # weights (model.safetensors or a run directory) to start from
    sampler: SamplerDefaults = field(default_factory=SamplerDefaults)
    #: the training the ``init_from`` weights had had (steps, CPU hours, ...), recorded when the run starts
    init_from_training: dict | None = None

    def step_lr(self) -> float:
        """The Langevin γ to sample with: ``sampler.step_lr``, else the official value (:data:`STEP_LR`)."""
        if self.sampler.step_lr is not None:
            return float(self.sampler.step_lr)
        return STEP_LR.get((self.dataset or "mp_20", self.task), 1e-5)

    def formula_diff_ratio(self) -> float:
        """Refinement start of prediction from the formula alone: ``sampler.formula_diff_ratio``, else 0.1."""
        value = self.sampler.formula_diff_ratio
        return DIFF_RATIO if value is None else float(value)

    def to_dict(self) -> dict:
        out = asdict(self)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        return cls(
            task=d["task"], preset=d["preset"], dataset=d.get("dataset"),
            train_files=list(d["train_files"]), val_files=list(d["val_files"]), symprec=d.get("symprec"),
            model=ModelConfig(**d["model"]), diffusion=DiffusionConfig(**d["diffusion"]), train=TrainConfig(**d["train"]),
            init_from=d.get("init_from"), sampler=SamplerDefaults(**(d.get("sampler") or {})),
            init_from_training=d.get("init_from_training"),
        )


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Learning-rate factor of optimizer step ``step`` (0-based) under a linear warm-up: ``(step + 1) /
    warmup_steps`` for the first ``warmup_steps`` steps, then 1."""
    return 1.0 if step >= warmup_steps else (step + 1) / warmup_steps


def preset_config(preset: str, task: str, dataset: str | None, overrides: dict) -> tuple[ModelConfig, TrainConfig]:
    """Model and train configs of a preset for a dataset (``None``: MP-20 settings), with overrides."""
    if preset not in PRESET_MODELS:
        raise ValueError(f"preset must be one of {', '.join(PRESET_MODELS)}, got {preset!r}")
    key = dataset if dataset in PAPER_DATASET else "mp_20"
    model = ModelConfig(task=task, **PRESET_MODELS[preset])
    base = dict(PAPER_DATASET[key])
    if preset == "small":
        base["batch_size"] = SMALL_BATCH[key]
        base["val_every_epochs"] = 1
    base.update({k: v for k, v in overrides.items() if v is not None})
    return model, TrainConfig(**base)
