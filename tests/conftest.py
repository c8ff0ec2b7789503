"""Shared test fixtures: real benchmark rows shipped in tests/data/fixtures (a few dozen per dataset)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

# pytest -n 2 runs two worker processes on the 2 CI cores: one intra-op thread each (also in the
# subprocesses the CLI tests start), or OpenMP threads oversubscribe the cores and spin.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

FIXTURES = Path(__file__).parent / "data" / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: fixture file -> spglib symprec used by the benchmark (METHOD §6)
DATASET_FIXTURES = {
    "perov_5_test.csv.gz": 0.01,
    "mp_20_pilot_train.csv.gz": 0.1,
    "mpts_52_val.csv.gz": 0.1,
    "carbon_24_val.csv.gz": 0.1,
}


def load_fixture_structures(name: str):
    """(material_id, pymatgen Structure) for every row of a fixture CSV."""
    from diffcsp_pp.data.sources import parse_cif, read_crystals

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(raw.material_id, parse_cif(raw.cif)) for raw in read_crystals(FIXTURES / name)]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def random_lattice(rng: np.random.Generator) -> np.ndarray:
    """A random row-vector lattice with lengths 3-8 Å and angles 60-120°."""
    from diffcsp_pp.symmetry import lattice_from_params

    return lattice_from_params(rng.uniform(3, 8, 3), rng.uniform(60, 120, 3))


def tiny_run_dir(path: Path, task: str = "csp", stats: dict | None = None) -> Path:
    """A run directory (config.json + model.safetensors) holding an untrained tiny model."""
    import json

    import torch
    from safetensors.torch import save_file

    from diffcsp_pp.diffusion.process import DiffusionConfig
    from diffcsp_pp.model import CSPNet, ModelConfig
    from diffcsp_pp.train.config import RunConfig, TrainConfig

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    mc = ModelConfig(hidden=16, num_layers=1, num_freqs=4, task=task)
    cfg = RunConfig(task=task, preset="small", dataset="perov_5", train_files=[], val_files=[], symprec=0.01,
                    model=mc, diffusion=DiffusionConfig(), train=TrainConfig())
    (path / "config.json").write_text(json.dumps(cfg.to_dict()))
    save_file(CSPNet(mc).state_dict(), path / "model.safetensors")
    if stats is not None:
        (path / "template_stats.json").write_text(json.dumps(stats))
    return path


def default_sigint():
    """``preexec_fn`` of a child that must see Ctrl-C: SIGINT's default action even where the test
    process ignores it (an ignored SIGINT is inherited by children, which then never see Ctrl-C)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
