"""Every bundled model: its files load without pickle and its card describes these weights; every
bundled CSP model predicts crystals that keep the requested space group (mp20-gen's generation is
tested in tests/sample/test_generate_api.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import spglib
from pymatgen.core import Composition
from safetensors.torch import load_file

import diffcsp_pp
from diffcsp_pp import DiffCSPPP, SamplerConfig
from diffcsp_pp.api import BUNDLED

PRETRAINED = Path(diffcsp_pp.__file__).parent / "pretrained"
SHIPPED = [name for name in BUNDLED if (PRETRAINED / BUNDLED[name] / "model.safetensors").is_file()]
CSP = [name for name in SHIPPED if json.loads((PRETRAINED / BUNDLED[name] / "config.json").read_text())["task"] == "csp"]


def _space_group(structure) -> int:
    cell = (structure.lattice.matrix, structure.frac_coords, np.array([s.specie.Z for s in structure]))
    return spglib.get_symmetry_dataset(cell, symprec=1e-3).number


@pytest.mark.parametrize("name", SHIPPED)
def test_card_matches_weights(name):
    folder = PRETRAINED / BUNDLED[name]
    card = json.loads((folder / "card.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    weights = load_file(folder / "model.safetensors")
    assert card["name"] == name
    assert card["task"] == config["task"]
    assert card["model"] == config["model"]
    assert card["params"] == sum(t.numel() for t in weights.values())
    assert (folder / "model.safetensors").stat().st_size <= 20 * 2**20  # the limit per bundled model
    assert card["evaluation"] or card.get("evaluation_gen"), "a bundled model states measured metrics"
    assert "PLACEHOLDER" not in json.dumps(card) + (folder / "README.md").read_text()


@pytest.mark.parametrize("name", CSP)
def test_csp_model_keeps_the_space_group(name):
    model = DiffCSPPP.load(name)
    structures = model.predict("SrTiO3", space_group=221, n=2, seed=0, steps=5)
    assert len(structures) == 2
    for s in structures:
        assert s.composition.reduced_formula == "SrTiO3"
        assert _space_group(s) == 221


def test_default_model_keeps_the_group_of_every_known_compound():
    """The 30 known compounds (tests/data/fixtures/known_compounds.csv, a copy of
    ../shared/data/known/known_compounds.csv) predicted from formula + space group with the default
    model come out in their space group (spglib, 1e-3). Regression: MoS2 in P6_3/mmc was once
    returned as P6/mmm (an enumerated assignment, Mo:2a S:2c S:2d, that always halves the cell)."""
    import csv

    rows = list(csv.DictReader(open(Path(__file__).parent / "data" / "fixtures" / "known_compounds.csv")))
    assert len(rows) == 30
    model = DiffCSPPP.load()
    out = model.predict([r["formula"] for r in rows], [int(r["space_group"]) for r in rows], seed=0,
                        sampler=SamplerConfig(steps=5))
    for row, [s] in zip(rows, out, strict=True):
        assert _space_group(s) == int(row["space_group"]), (row["formula"], s.properties["wyckoff"])
        assert s.composition.reduced_formula == Composition(row["formula"]).reduced_formula


@pytest.mark.parametrize("name", SHIPPED)
def test_sampler_defaults_live_in_the_config(name):
    """A bundled model's sampler choices are in config.json ("sampler"); where its card documents
    one, the two agree (the card is documentation: nothing reads it to sample)."""
    from diffcsp_pp.folder import ModelFolder

    folder = ModelFolder.resolve(name)
    raw = json.loads((folder.path / "config.json").read_text())
    assert set(raw["sampler"]) == {"step_lr", "formula_diff_ratio"}
    card = folder.card()
    for key in ("step_lr", "formula_diff_ratio"):
        if key in card:
            assert raw["sampler"][key] == card[key]
    cfg = folder.config()
    assert cfg.step_lr() > 0 and 0 <= cfg.formula_diff_ratio() < 1
