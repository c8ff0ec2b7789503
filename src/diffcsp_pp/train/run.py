"""``train()``: data -> Lightning Trainer -> run directory.

A run directory is a model folder (:class:`~diffcsp_pp.folder.ModelFolder`, which writes its files):
``config.json`` (the RunConfig), ``model.safetensors`` (the evaluation weights: EMA if enabled),
``template_stats.json`` (the training patterns), ``training_state.json`` (step, epoch, last
validation loss), and beside them ``checkpoints/``
(Lightning's full training state, written atomically; ``last.ckpt`` resumes, ``best.ckpt`` has the best
validation loss), and ``logs/`` (CSV and TensorBoard). ``resume=True`` continues from
``checkpoints/last.ckpt``, loaded with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from pathlib import Path

import torch

from ..data.batch import CrystalDataset
from ..data.preprocess import PreprocessConfig, preprocess
from ..data.registry import default_cache_dir
from ..data.store import load_records
from ..data.template_stats import TemplateStats
from ..errors import DataError
from ..folder import ModelFolder, training_of
from .config import RunConfig


def _is_rank_zero() -> bool:
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def load_infos(files: list[str], symprec: float | None, cache_dir: Path, workers: int, progress: bool):
    """Preprocess (cached) and concatenate files, dropping repeated material ids: list[SymmetryInfo]."""
    infos, seen = [], set()
    for f in files:
        res = preprocess(f, cache_dir, PreprocessConfig(symprec=symprec), workers=workers, progress=progress)
        for info in load_records(res.output):
            if info.structure_id is not None and info.structure_id in seen:
                continue
            seen.add(info.structure_id)
            infos.append(info)
    if not infos:
        raise DataError(f"no crystal could be analysed in {', '.join(files)}")
    return infos


def load_dataset(files: list[str], symprec: float | None, cache_dir: Path, workers: int, progress: bool) -> CrystalDataset:
    """:func:`load_infos` as a CrystalDataset."""
    return CrystalDataset(load_infos(files, symprec, cache_dir, workers, progress))


def template_stats(infos) -> dict[str, int]:
    """How often each template pattern occurs: space group + Wyckoff labels, with and without species."""
    return TemplateStats.from_infos(infos).counts


def export_weights(module, run_dir: Path) -> None:
    """Write the evaluation weights (EMA when enabled) as safetensors, atomically."""
    ModelFolder(run_dir).write_weights(module.eval_model.state_dict())


def _callbacks(run_dir: Path, cfg: RunConfig, progress: bool):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    class ExportWeights(L.Callback):
        """Keep model.safetensors and training_state.json in step with the checkpoints."""

        def _export(self, trainer, module):
            if trainer.is_global_zero:
                export_weights(module, run_dir)
                val = trainer.callback_metrics.get("val_loss")
                state = {"global_step": trainer.global_step, "epoch": trainer.current_epoch,
                         "val_loss": None if val is None else float(val),
                         "cpu_hours": float(module.cpu_seconds) / 3600, "wall_hours": float(module.wall_seconds) / 3600,
                         "nonfinite_batches": module.nonfinite_batches}
                ModelFolder(run_dir).write_training_state(state)

        def on_train_batch_end(self, trainer, module, *args):
            if trainer.global_step % cfg.train.checkpoint_every == 0:
                self._export(trainer, module)

        def on_train_end(self, trainer, module):
            self._export(trainer, module)

    class RunClock(L.Callback):
        """Accumulate this process's CPU time (all threads, ``time.process_time``) and the wall time
        spent training into the module's checkpointed buffers; log both in hours; stop the run, with a
        checkpoint, once ``max_cpu_hours`` is reached (on any rank: each counts its own process)."""

        def on_train_start(self, trainer, module):
            self._cpu, self._wall = time.process_time(), time.perf_counter()

        def on_train_batch_end(self, trainer, module, *args):
            cpu, wall = time.process_time(), time.perf_counter()
            module.cpu_seconds += cpu - self._cpu
            module.wall_seconds += wall - self._wall
            self._cpu, self._wall = cpu, wall
            module.log_dict({"cpu_hours": float(module.cpu_seconds) / 3600,
                             "wall_hours": float(module.wall_seconds) / 3600}, batch_size=1)
            budget = cfg.train.max_cpu_hours
            if budget is None or trainer.should_stop:
                return
            # every rank must take the same decision (save_checkpoint is collective under DDP)
            if trainer.strategy.reduce_boolean_decision(float(module.cpu_seconds) >= budget * 3600, all=False):
                trainer.should_stop = True
                trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
                ExportWeights()._export(trainer, module)

    ckpt_dir = run_dir / "checkpoints"
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="step{step}", every_n_train_steps=cfg.train.checkpoint_every,
                           save_top_k=0, save_last=True, save_on_train_epoch_end=True,
                           enable_version_counter=False)  # a moved run dir must not write last-v1.ckpt
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min", save_top_k=1,
                           enable_version_counter=False)
    return [last, best, ExportWeights(), RunClock()]


def _atomic_checkpoint_io():
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    from ..atomic import atomic_path

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Write checkpoints to a temporary file and rename: a kill never leaves a torn file."""

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            with atomic_path(path) as tmp:
                super().save_checkpoint(checkpoint, tmp, storage_options)

    return AtomicCheckpointIO()


def train(cfg: RunConfig, run_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
          cache_dir: str | os.PathLike | None = None, workers: int = 1) -> Path:
    """Train (or resume) a model into ``run_dir``; returns the path of ``model.safetensors``."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from ..allocator import tune_allocator
    from .module import CrystalDataModule, DiffCSPModule

    tune_allocator()
    if not progress:  # --quiet: keep Lightning's banners and tips out of the output
        import logging

        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)

    run_dir = Path(run_dir)
    folder = ModelFolder(run_dir)
    ckpt = resume_checkpoint(run_dir) if resume else None
    if not resume and _is_rank_zero() and folder.file(folder.CONFIG).exists():
        raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.init_from and not resume and cfg.init_from_training is None:  # the model's history goes on
        cfg = dataclasses.replace(cfg, init_from_training=training_of(cfg.init_from) or None)
    if _is_rank_zero():
        folder.write_config(cfg)

    tc = cfg.train
    devices = tc.devices
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    elif devices > 1 and (tc.accelerator == "cpu" or not torch.cuda.is_available()):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "preprocessed"
    train_infos = load_infos(cfg.train_files, cfg.symprec, cache, workers, progress)
    if _is_rank_zero():  # the pattern frequencies the prediction API ranks Wyckoff assignments by
        folder.write_template_stats(TemplateStats.from_infos(train_infos))
    train_set = CrystalDataset(train_infos)
    val_set = load_dataset(cfg.val_files, cfg.symprec, cache, workers, progress)

    L.seed_everything(tc.seed, workers=True, verbose=False)
    module = DiffCSPModule(cfg.model.to_dict(), cfg.diffusion.to_dict(), tc.__dict__.copy())
    if cfg.init_from and not resume:
        _init_weights(module, Path(cfg.init_from))
    strategy = "ddp" if devices > 1 or tc.num_nodes > 1 else "auto"
    precision = {"32": "32-true", "bf16": "bf16-mixed"}.get(tc.precision, tc.precision)
    trainer = L.Trainer(
        default_root_dir=run_dir,
        accelerator=tc.accelerator,
        devices=devices,
        num_nodes=tc.num_nodes,
        strategy=strategy,
        precision=precision,
        max_epochs=tc.max_epochs,
        max_steps=tc.max_steps,
        gradient_clip_val=tc.grad_clip_value,
        gradient_clip_algorithm="value",
        check_val_every_n_epoch=tc.val_every_epochs,
        callbacks=_callbacks(run_dir, cfg, progress),
        logger=[CSVLogger(run_dir, name="logs"), TensorBoardLogger(run_dir, name="tensorboard")],
        enable_progress_bar=progress,
        enable_model_summary=False,
        use_distributed_sampler=False,
        log_every_n_steps=max(1, min(50, tc.checkpoint_every, len(train_set) // (tc.batch_size * devices * tc.num_nodes) or 1)),
        num_sanity_val_steps=0,
        plugins=[_atomic_checkpoint_io()],
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")  # a skipped batch, counted
        trainer.fit(module, datamodule=CrystalDataModule(train_set, val_set, tc),
                    ckpt_path=str(ckpt) if resume else None, weights_only=True)
    return folder.file(folder.WEIGHTS)


def resume_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The checkpoint ``--resume`` continues from: ``checkpoints/last.ckpt``, else ``best.ckpt`` (a run
    killed before its first last.ckpt; said in a warning). FileNotFoundError without either,
    DataError for a file that is not a readable checkpoint (read with ``weights_only=True``: plain
    tensors and containers only, never pickled code)."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    last, best = ckpt_dir / "last.ckpt", ckpt_dir / "best.ckpt"
    path = last if last.is_file() else best if best.is_file() else None
    if path is None:
        raise FileNotFoundError(f"nothing to resume: {last} does not exist (nor {best.name})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        step = int(state["global_step"])
    except Exception as err:  # noqa: BLE001 - any unreadable or foreign file: one clear error
        raise DataError(f"cannot resume from {path}: not a readable checkpoint of this package "
                        f"({type(err).__name__}); nothing was loaded from it") from None
    if path == best:
        warnings.warn(f"{last} is missing (the run stopped before its first last.ckpt): resuming from {best} "
                      f"(step {step})", UserWarning, stacklevel=2)
    return path


#: the EMA's update count when a run starts from trained weights: its warm-up rule
#: (:func:`~diffcsp_pp.train.module.ema_update_fn`) then uses the full decay from the first step
EMA_CONTINUE_COUNT = 1_000_000


def _init_weights(module, path: Path) -> None:
    """Start from saved weights (fine-tuning, or continuing a model across machines). The EMA starts
    from them too, at its full decay: the weights are already an average, and the warm-up rule of a
    new EMA would let it follow the first noisy steps closely (its decay is 0.975 after 350 steps)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = ModelFolder(path).file(ModelFolder.WEIGHTS) if path.is_dir() else path
    if not weights.is_file():
        raise FileNotFoundError(f"no weights to start from at {weights}")
    try:
        module.model.load_state_dict(load_file(weights))
    except (RuntimeError, SafetensorError, OSError) as err:
        raise DataError(f"cannot start from {weights}: {err}") from None
    if module.ema is not None:
        module.ema.module.load_state_dict(module.model.state_dict())
        module.ema.n_averaged.fill_(EMA_CONTINUE_COUNT)


def load_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """The RunConfig stored in a run directory."""
    return ModelFolder(run_dir).config()
