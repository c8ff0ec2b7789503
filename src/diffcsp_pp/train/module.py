"""LightningModule and DataModule. Lightning runs the loop, DDP, precision, checkpoints and logs;
this file only says what a step is.

Reproducibility: every random draw of a training step comes from a generator seeded with
(seed, batches consumed, rank), and the batch order of epoch e is a pure function of (seed, e) (see
:class:`~diffcsp_pp.data.batch.EpochBatchSampler`); the batch counter is a checkpointed buffer. A run resumed from a checkpoint therefore
continues exactly as the uninterrupted run would have. The EMA of the weights is updated right after
each optimiser step (inside ``optimizer_step``, so a checkpoint never sees a stale EMA).
"""

from __future__ import annotations

import lightning as L
import torch
from torch.optim.swa_utils import AveragedModel

from ..data.batch import CrystalDataset, EpochBatchSampler
from ..diffusion.process import DiffusionConfig, Schedules, diffusion_loss
from ..model.cspnet import CSPNet, ModelConfig
from .config import TrainConfig, warmup_factor

#: seed of the validation noise: the same for every run, whatever its training seed, so validation
#: losses compare across runs (a run continued with another seed once showed a 0.025 "jump" that was
#: only other noise draws); the value is the one the default seed 42 always had
VAL_SEED = 42 + 1_000_003


def ema_update_fn(decay: float):
    """EMA with a warm-up: the decay used at update n is ``min(decay, (1 + n) / (10 + n))``, so early
    averages are not dominated by the random initial weights."""

    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


def step_generator(seed: int, step: int, rank: int, device) -> torch.Generator:
    """A generator whose stream depends only on (seed, step, rank)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) * 1009 + rank)
    return g


class DiffCSPModule(L.LightningModule):
    """Denoiser + schedules + (optional) EMA copy; the loss of METHOD §4.5."""

    def __init__(self, model: dict, diffusion: dict, train: dict):
        super().__init__()
        self.save_hyperparameters()  # plain dicts only: checkpoints load with weights_only=True
        self.model_config = ModelConfig(**model)
        self.diffusion_config = DiffusionConfig(**diffusion)
        self.train_config = TrainConfig(**train)
        self.model = CSPNet(self.model_config)
        self.sched = Schedules(self.diffusion_config)
        # training batches consumed (checkpointed): drives the data order and the noise streams
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        # process CPU seconds and wall seconds spent training, over all sessions of the run (checkpointed;
        # kept by the RunClock callback of train/run.py)
        self.register_buffer("cpu_seconds", torch.zeros((), dtype=torch.float64))
        self.register_buffer("wall_seconds", torch.zeros((), dtype=torch.float64))
        # training batches skipped for a non-finite loss (kept in the checkpoint, not in the weights)
        self.nonfinite_batches = 0
        self.ema = None
        if self.train_config.ema:
            self.ema = AveragedModel(self.model, multi_avg_fn=ema_update_fn(self.train_config.ema_decay), use_buffers=True)
            self.ema.requires_grad_(False)

    @property
    def eval_model(self) -> CSPNet:
        """The EMA weights when EMA is on, else the raw model."""
        return self.ema.module if self.ema is not None else self.model

    def training_step(self, batch, batch_idx):
        g = step_generator(self.train_config.seed, int(self.batches_seen), self.global_rank, batch.k.device)
        self.batches_seen += 1
        terms = diffusion_loss(self.model, self.sched, self.diffusion_config, batch, g, self.model_config.task)
        if not torch.isfinite(terms["loss"]):
            # skip the batch (no backward, no optimiser update, as the official code does), count and log it
            from lightning.pytorch.utilities import rank_zero_warn

            self.nonfinite_batches += 1
            rank_zero_warn(f"non-finite training loss at batch {int(self.batches_seen) - 1}: batch skipped "
                           f"({self.nonfinite_batches} so far)")
            self.log("train/nonfinite_batches", float(self.nonfinite_batches), batch_size=batch.num_graphs)
            return None
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=batch.num_graphs, prog_bar=False)
        self.log("loss", terms["loss"], prog_bar=True, logger=False, batch_size=batch.num_graphs)
        return terms["loss"]

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clip as configured, except after a skipped batch: it left no gradients (clipping none crashed)."""
        if any(p.grad is not None for group in optimizer.param_groups for p in group["params"]):
            self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val,
                                gradient_clip_algorithm=gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["nonfinite_batches"] = self.nonfinite_batches

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.nonfinite_batches = int(checkpoint.get("nonfinite_batches", 0))

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        # the warm-up scales the learning rate of this step only: the scheduler never sees it, and a
        # resumed run (same global_step) takes the same steps
        factor = warmup_factor(self.global_step, self.train_config.warmup_steps)
        saved = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] *= factor
        try:
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        finally:
            for group, lr in zip(optimizer.param_groups, saved, strict=True):
                group["lr"] = lr
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def validation_terms(self, batch, batch_idx: int) -> dict:
        """Loss terms of a validation batch under the fixed validation noise (:data:`VAL_SEED`): the
        validation loss is deterministic and the same for every run's weights alike."""
        g = step_generator(VAL_SEED, batch_idx, self.global_rank, batch.k.device)
        return diffusion_loss(self.eval_model, self.sched, self.diffusion_config, batch, g, self.model_config.task)

    def validation_step(self, batch, batch_idx):
        terms = self.validation_terms(batch, batch_idx)
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, batch_size=batch.num_graphs, sync_dist=True)
        self.log("val_loss", terms["loss"], batch_size=batch.num_graphs, sync_dist=True, prog_bar=True)

    def configure_optimizers(self):
        cfg = self.train_config
        opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        if cfg.scheduler == "none":
            return opt
        if cfg.scheduler == "cosine":
            if cfg.max_steps > 0:
                sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.max_steps, eta_min=1e-5)
                return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.max_epochs, eta_min=1e-5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        # Stepped after each validation (every val_every_epochs epochs); the patience is given in epochs,
        # as in the official code, where the scheduler saw a stale validation loss every epoch.
        patience = max(1, -(-cfg.plateau_patience // cfg.val_every_epochs))
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=cfg.plateau_factor, patience=patience, min_lr=cfg.min_lr
        )
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": sched, "monitor": "val_loss", "interval": "epoch",
                             "frequency": cfg.val_every_epochs, "strict": False},
        }


class CrystalDataModule(L.LightningDataModule):
    """Train/val loaders over preprocessed crystals with deterministic, resumable order."""

    def __init__(self, train_set: CrystalDataset, val_set: CrystalDataset, config: TrainConfig):
        super().__init__()
        self.train_set, self.val_set, self.config = train_set, val_set, config

    def _loader(self, dataset, batch_size, shuffle, position_fn):
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochBatchSampler(
            len(dataset), batch_size, self.config.seed, shuffle=shuffle,
            rank=rank, world_size=world, position_fn=position_fn,
        )
        return _ResumableLoader(dataset, batch_sampler=sampler, collate_fn=dataset.collate, num_workers=0)

    def train_dataloader(self):
        return self._loader(self.train_set, self.config.batch_size, True,
                            lambda: int(self.trainer.lightning_module.batches_seen))

    def val_dataloader(self):
        return self._loader(self.val_set, self.config.val_batch_size or self.config.batch_size, False, None)


class _ResumableLoader(torch.utils.data.DataLoader):
    """A DataLoader that tells Lightning it resumes by itself (its sampler skips trained batches)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore: the sampler derives its position from the module's batch counter."""
