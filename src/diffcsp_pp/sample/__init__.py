"""Sampling: the engine (SamplerConfig, runners, Engine, keep_group), refinement, provenance,
symmetry-pattern drawing and ranking, the output writer. The old function names (load_run,
sample_structures, default_step_lr) stay one release in :mod:`.generate`."""

from .config import SamplerConfig
from .distributed import Devices
from .engine import Engine, keep_group
from .generate import STEP_LR, default_step_lr, load_run, sample_structures
from .provenance import Provenance

__all__ = ["Devices", "Engine", "Provenance", "SamplerConfig", "STEP_LR", "default_step_lr", "keep_group", "load_run",
           "sample_structures"]
