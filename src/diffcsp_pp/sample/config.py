"""``SamplerConfig``: how to sample (steps, γ, precision, parallelism, retries), frozen.

The model-dependent default (Langevin γ) is filled in one place, :meth:`SamplerConfig.resolve`,
from the model folder's config (:meth:`diffcsp_pp.train.config.RunConfig.step_lr`). Everything
else has a fixed default. What is sampled depends on the seed, ``steps``, ``step_lr``,
``precision``, ``compile`` (compiled kernels round differently), ``group_size``, ``max_edges`` and
``fourier_plan``; it does not depend on ``parallel``, ``workers`` or ``progress``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

#: Network precision of the sampler (the sampler state and the symmetry stay fp32/fp64).
PRECISIONS = ("fp32", "bf16")
#: Where the groups of crystals run: threads of this process, or spawned worker processes.
PARALLEL = ("threads", "processes")
#: Extra sampling rounds for outputs whose spglib group is not their template's.
RETRIES = 3


@dataclass(frozen=True)
class SamplerConfig:
    """Settings of one sampling run (see the module docstring).

    Attributes:
        steps: predictor-corrector steps, respaced evenly over T-1..1 (None: the paper's T-1 = 999);
            in refinement, over t₀..1 (None: all t₀).
        step_lr: Langevin γ (None: the model's, from its ``config.json``).
        precision: ``"fp32"`` or ``"bf16"`` (network under bfloat16 autocast).
        compile: ``torch.compile`` the network (needs a C++ compiler; about 10 s per process).
        parallel: ``"threads"`` or ``"processes"`` (one spawned worker per core, each with a copy
            of the network; CPU only).
        workers: groups sampled at once (None: torch's thread count).
        retries: extra rounds for outputs with a supergroup of their requested group.
        group_size: crystals per group (each group has its own random stream).
        max_edges: most Σ n² per group.
        fourier_plan: precompute the Fourier products the Wyckoff operations fix (same results up
            to rounding, faster).
        progress: a progress bar over the groups.
    """

    steps: int | None = None
    step_lr: float | None = None
    precision: str = "fp32"
    compile: bool = False
    parallel: str = "threads"
    workers: int | None = None
    retries: int = RETRIES
    group_size: int = 50
    max_edges: int = 200_000
    fourier_plan: bool = True
    progress: bool = False

    def __post_init__(self):
        def positive(name):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        for name in ("steps", "workers", "group_size", "max_edges"):
            positive(name)
        if self.step_lr is not None and (isinstance(self.step_lr, bool) or not isinstance(self.step_lr, (int, float))
                                         or not 0 <= self.step_lr < float("inf")):
            raise ValueError(f"step_lr must be a non-negative finite number, got {self.step_lr!r}")
        if self.workers is not None:
            from ..policy import check

            check("workers", self.workers, "workers")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.parallel not in PARALLEL:
            raise ValueError(f"parallel must be one of {', '.join(PARALLEL)}, got {self.parallel!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries!r}")

    def replace(self, **changes) -> SamplerConfig:
        return dataclasses.replace(self, **changes)

    def resolve(self, run_config) -> SamplerConfig:
        """This configuration with the model's defaults filled in (the one place they are read)."""
        return self if self.step_lr is not None else self.replace(step_lr=run_config.step_lr())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
