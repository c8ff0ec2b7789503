"""Sampling with explicit arguments, for scripts written before the engine (kept one release).

The one implementation is :class:`diffcsp_pp.sample.engine.Engine` (with its SamplerConfig and
runner) and the jobs of :mod:`diffcsp_pp.jobs`; the functions here translate their old arguments
into those: :func:`sample_structures` is ``Engine(...).sample``, :func:`load_run` is
:meth:`diffcsp_pp.folder.ModelFolder.load`, :func:`default_step_lr` is the model config's
``step_lr()``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..folder import ModelFolder
from ..train.config import STEP_LR
from .config import PARALLEL, RETRIES, SamplerConfig
from .engine import CHECK_SYMPREC, NETWORK_DTYPES, Engine, keep_group
from .runner import SMALL_EDGES, compiled

#: Network precision name -> autocast dtype (None: the state's own dtype).
PRECISIONS = NETWORK_DTYPES


def load_run(path: str | os.PathLike, device: str = "cpu"):
    """(CSPNet in eval mode, RunConfig) from a run directory (``config.json`` + ``model.safetensors``)."""
    return ModelFolder(path).load(device)


def default_step_lr(config, model_dir: str | os.PathLike | None = None) -> float:
    """Langevin γ of a model: its config's ``sampler.step_lr``, else the official value for its
    dataset and task (:data:`STEP_LR`). With ``model_dir`` the folder's config is read (an old
    folder without a ``"sampler"`` section keeps its card's value for one release)."""
    return (ModelFolder(model_dir).config() if model_dir is not None else config).step_lr()


def _run_config_of(model, diffusion_config):
    """A RunConfig holding a bare network's settings (for the engine)."""
    from ..train.config import RunConfig

    return RunConfig(task=model.config.task, preset="custom", dataset=None, train_files=[], val_files=[],
                     symprec=None, model=model.config, diffusion=diffusion_config)


def sample_structures(model, diffusion_config, templates: Sequence, seed: int, step_lr: float, n: int = 1,
                      timesteps: Sequence[int] | None = None, max_edges: int = 200_000, progress: bool = False,
                      precision: str = "fp32", group_size: int = 50, workers: int | None = None, init=None,
                      fourier_plan: bool = True, parallel: str = "threads", compile_network: bool = False):
    """``n`` structures per template (template-major), without the group check:
    ``Engine(model, ..., SamplerConfig(...)).sample(templates, seed, n, timesteps, init)``."""
    sampler = SamplerConfig(step_lr=step_lr, precision=precision, compile=compile_network, parallel=parallel,
                            workers=None if workers is None else int(workers), group_size=group_size,
                            max_edges=max_edges, fourier_plan=fourier_plan, progress=progress)
    engine = Engine(model, _run_config_of(model, diffusion_config), sampler)
    return engine.sample(templates, seed, n=n, timesteps=timesteps, init=init)


__all__ = ["STEP_LR", "PARALLEL", "PRECISIONS", "RETRIES", "CHECK_SYMPREC", "SMALL_EDGES", "compiled",
           "default_step_lr", "keep_group", "load_run", "sample_structures"]
