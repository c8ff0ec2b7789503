"""The batches of a batched job (``predict --csv``, ``generate``) on Lightning: ``Trainer.predict``
across processes, GPUs and nodes, with the same settings as training (``--accelerator``,
``--devices``, ``--num-nodes``; DDP when more than one process).

This is a way to *spread batches*, not another sampler: each predict step is one batch of the
job, drawn by the job's own batch function through the :class:`~diffcsp_pp.sample.engine.Engine`
(whose runner still decides threads / processes / compile inside the rank). The job's list of
batches to do (each with its seed ``seed + b`` from its position in the whole input,
:func:`diffcsp_pp.jobs.batches`) is the same on every rank; rank r takes batches r, r + W,
r + 2W, ... of it (W processes in all), so the crystals do not depend on W. Each rank hands its
batches to ``on_batch`` in its own process (the CLI's writer there writes the rank's own shard).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Accelerators of ``--accelerator`` (as for ``train``).
ACCELERATORS = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class Devices:
    """Where the batches run under Lightning: ``devices`` processes (GPUs, or CPU processes) on
    each of ``num_nodes`` nodes."""

    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1

    def __post_init__(self):
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"accelerator must be one of {', '.join(ACCELERATORS)}, got {self.accelerator!r}")
        for name in ("devices", "num_nodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def processes(self) -> int:
        return self.devices * self.num_nodes


def rank_share(todo: Sequence, rank: int, world: int) -> list:
    """Rank ``rank``'s batches of ``todo``: every ``world``-th from its own, padded with None to
    the same count on every rank (each rank then runs the same number of steps)."""
    steps = -(-len(todo) // world)
    mine = list(todo[rank::world])
    return mine + [None] * (steps - len(mine))


def _identity(item):
    return item


def run_batches(network, draw: Callable, todo: Sequence, on_batch: Callable | None, devices: Devices,
                progress: bool = False, keep: bool = True) -> list:
    """Run ``draw(indices, seed)`` for this rank's share of ``todo`` ((indices, seed) pairs) as
    ``Trainer.predict`` steps, calling ``on_batch(result)`` after each in this process. Returns this
    rank's results (in every process of a DDP run; the launching process is rank 0); ``keep=False``:
    none (they were handed to ``on_batch``).

    ``network``: the engine's network (Lightning moves it to the rank's device).
    """
    import logging
    import os
    import warnings

    import lightning as L
    import torch

    if not todo:
        return []
    if not progress:
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)

    class BatchSampling(L.LightningModule):
        """One predict step = one batch of the job, drawn by the job's batch function."""

        def __init__(self):
            super().__init__()
            self.network = network
            self.results: list = []

        def predict_dataloader(self):
            from torch.utils.data import DataLoader

            world = self.trainer.world_size
            if world > 1 and self.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices.devices))
            return DataLoader(rank_share(todo, self.global_rank, world), batch_size=None, collate_fn=_identity)

        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            return batch  # (indices, seed): the batch function builds its tensors on the network's device

        def predict_step(self, item, batch_idx):
            if item is None:  # padding: this rank's share is done
                return None
            result = draw(*item)
            if on_batch is not None:
                on_batch(result)
            if keep:
                self.results.append(result)
            return None

        def on_predict_end(self):
            # every rank's batches are written before any process goes on (rank 0 then summarises)
            self.trainer.strategy.barrier("diffcsp_pp.sample.distributed")

    trainer = L.Trainer(
        accelerator=devices.accelerator, devices=devices.devices, num_nodes=devices.num_nodes,
        strategy="ddp" if devices.processes > 1 else "auto",
        precision="32-true",  # the sampler's own precision (SamplerConfig.precision) sets the network's dtype
        logger=False, enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
        use_distributed_sampler=False, inference_mode=True,
    )
    module = BatchSampling()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        warnings.filterwarnings("ignore", message=".*predict returned None.*")
        trainer.predict(module, return_predictions=False)
    return module.results


__all__ = ["ACCELERATORS", "Devices", "rank_share", "run_batches"]
