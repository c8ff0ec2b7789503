"""CDVAE's supervised property models (DimeNet++), the evaluator of the paper's d_E, in plain torch.

The DiffCSP++ paper computes d_E (METHOD §7.3) as the Wasserstein-1 distance between property
predictions of CDVAE's ``CrystGNN_Supervise`` models for generated and for test crystals: a DimeNet++
encoder (hidden 128, 4 interaction blocks, cutoff 7 Å, 6 radial and 7 spherical basis functions,
mean readout) on a CrystalNN graph with periodic images, predicting the standardised target
(formation energy per atom for MP-20, ``heat_ref`` for Perov-5, energy per atom for Carbon-24).

This module is our own implementation of that network, written from the DimeNet++ equations
(Gasteiger et al. 2020) and the layer layout that the trained weights' key names fix, needing no
torch_scatter / torch_sparse / torch_geometric: aggregation is ``index_add_``, triplets are built by
sorting and indexing. The forward pass is vectorised over all atoms, edges and triplets of a batch.

Graph (as CDVAE's evaluation builds it, ``TensorCrystDataset`` → ``build_crystal_graph``): the
structure is rebuilt from its lattice parameters and fractional coordinates
(``Lattice.from_parameters``), and pymatgen's ``StructureGraph`` with
``CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)`` gives one edge per
bond; each bond becomes two directed edges ``j → i`` (image vector ``t``) and ``i → j`` (``-t``).
The edge vector of ``j → i`` is ``pos[j] + t·L − pos[i]``. Triplets ``k → j → i`` pair every edge
``j → i`` with every edge ``k → j`` whose source atom ``k`` is not ``i`` (as atom indices, so the
same atom in another periodic image is excluded too — CDVAE's rule, kept for parity). The
evaluation path does not Niggli-reduce (the CrystalNN graph with periodic images does not depend
on the cell choice).

Weights: safetensors + JSON directories (``model.safetensors``, ``hparams.json``,
``prop_scaler.json``), one per model (``mp20``, ``perovskite``, ``carbon``), looked up in
``$DIFFCSP_PP_PROPERTY_MODELS``, else ``../shared/models/cdvae-property`` beside the repository, else
``../shared/models/cdvae-property`` relative to the working directory. They are not shipped with the
package (see README, "Property models for d_E").
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: Environment variable naming the folder that holds the property models (one sub-folder each).
PROPERTY_MODELS_ENV = "DIFFCSP_PP_PROPERTY_MODELS"
#: Property model of each benchmark (MPTS-52's official config points to the MP-20 one).
DATASET_PROPERTY_MODEL = {"mp_20": "mp20", "mpts_52": "mp20", "perov_5": "perovskite", "carbon_24": "carbon"}
#: Elements the embedding table covers (atomic numbers 0-94).
MAX_Z = 94


# ------------------------------------------------------------------------------ locating weights
def default_property_models_dir() -> Path | None:
    """The folder holding the property models: ``$DIFFCSP_PP_PROPERTY_MODELS`` if set, else the first
    existing of ``<repository>/../shared/models/cdvae-property`` and ``./../shared/models/cdvae-property``;
    None if none exists."""
    env = os.environ.get(PROPERTY_MODELS_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    for cand in (repo.parent / "shared" / "models" / "cdvae-property",
                 Path.cwd().parent / "shared" / "models" / "cdvae-property"):
        if cand.is_dir():
            return cand
    return None


def resolve_property_model(name_or_path: str | os.PathLike, models_dir: str | os.PathLike | None = None) -> Path:
    """Folder of a property model given its name (``mp20``, ``perovskite``, ``carbon``) or a path.

    Raises:
        FileNotFoundError: naming the folders searched, when the model is not found.
    """
    p = Path(name_or_path)
    if (p / "model.safetensors").is_file():
        return p
    base = Path(models_dir) if models_dir is not None else default_property_models_dir()
    if base is not None and (base / str(name_or_path) / "model.safetensors").is_file():
        return base / str(name_or_path)
    where = str(base) if base is not None else f"${PROPERTY_MODELS_ENV} (unset) or ../shared/models/cdvae-property"
    raise FileNotFoundError(f"property model {str(name_or_path)!r} not found in {where}: set "
                            f"{PROPERTY_MODELS_ENV} or pass --property-models DIR (README: property models for d_E)")


# ------------------------------------------------------------------------------ basis functions
def envelope(x: torch.Tensor, exponent: int) -> torch.Tensor:
    """DimeNet's smooth cutoff u(x) = 1/x + a x^(p-1) + b x^p + c x^(p+1), p = exponent + 1, zero for x ≥ 1.

    a = -(p+1)(p+2)/2, b = p(p+2), c = -p(p+1)/2, so u(1) = u'(1) = u''(1) = 0.
    """
    p = exponent + 1
    a, b, c = -(p + 1) * (p + 2) / 2.0, float(p * (p + 2)), -p * (p + 1) / 2.0
    xp = x.pow(p - 1)
    out = 1.0 / x + a * xp + b * xp * x + c * xp * x * x
    return out * (x < 1.0).to(x.dtype)


def spherical_bessel(l_max: int, x: torch.Tensor) -> torch.Tensor:
    """Spherical Bessel functions j_0 … j_l_max of the first kind: [..., l_max + 1].

    Upward recurrence j_{l+1} = (2l+1)/x j_l − j_{l−1}; in DimeNet's use the argument is at least the
    first root of j_l times the smallest scaled distance, where the recurrence is accurate in float64.
    """
    s, c = torch.sin(x), torch.cos(x)
    out = [s / x]
    if l_max >= 1:
        out.append(s / x**2 - c / x)
    for ell in range(1, l_max):
        out.append((2 * ell + 1) / x * out[ell] - out[ell - 1])
    return torch.stack(out, dim=-1)


def legendre(l_max: int, z: torch.Tensor) -> torch.Tensor:
    """Legendre polynomials P_0 … P_l_max at z: [..., l_max + 1] (Bonnet's recurrence)."""
    out = [torch.ones_like(z)]
    if l_max >= 1:
        out.append(z)
    for ell in range(1, l_max):
        out.append(((2 * ell + 1) * z * out[ell] - ell * out[ell - 1]) / (ell + 1))
    return torch.stack(out, dim=-1)


@lru_cache(maxsize=8)
def spherical_bessel_zeros(num_spherical: int, num_radial: int) -> np.ndarray:
    """z[l, n]: the first ``num_radial`` positive roots of j_l, l < num_spherical (float64).

    The roots of j_l interlace those of j_{l-1}, so each is bracketed by consecutive roots of the
    previous order (starting from j_0's roots nπ) and found with Brent's method.
    """
    from scipy.optimize import brentq
    from scipy.special import spherical_jn

    extra = num_spherical + num_radial
    roots = np.arange(1, extra + 1) * np.pi
    zeros = np.zeros((num_spherical, num_radial))
    zeros[0] = roots[:num_radial]
    for ell in range(1, num_spherical):
        roots = np.array([brentq(lambda t: spherical_jn(ell, t), roots[m], roots[m + 1], xtol=1e-15)
                          for m in range(len(roots) - 1)])
        zeros[ell] = roots[:num_radial]
    return zeros


class SphericalBasis(nn.Module):
    """DimeNet's 2-D basis a_{ln}(d, θ) = u(d/c) · N_{ln} j_l(z_{ln} d/c) · Y_l^0(θ), flattened l-major.

    N_{ln} = (½ j_{l+1}(z_{ln})²)^(-½) normalises the radial part on [0, 1]; Y_l^0(θ) =
    √((2l+1)/4π) P_l(cos θ). Radial parts are evaluated per edge and gathered per triplet.
    """

    def __init__(self, num_spherical: int, num_radial: int, cutoff: float, envelope_exponent: int):
        super().__init__()
        from scipy.special import spherical_jn

        self.num_spherical, self.num_radial = num_spherical, num_radial
        self.cutoff, self.exponent = float(cutoff), int(envelope_exponent)
        zeros = spherical_bessel_zeros(num_spherical, num_radial)
        norm = np.stack([(0.5 * spherical_jn(ell + 1, zeros[ell]) ** 2) ** -0.5 for ell in range(num_spherical)])
        ylm = np.sqrt((2 * np.arange(num_spherical) + 1) / (4 * np.pi))
        self.register_buffer("zeros", torch.tensor(zeros, dtype=torch.float64), persistent=False)
        self.register_buffer("norm", torch.tensor(norm, dtype=torch.float64), persistent=False)
        self.register_buffer("ylm", torch.tensor(ylm, dtype=torch.float64), persistent=False)

    def forward(self, dist: torch.Tensor, angle: torch.Tensor, idx_kj: torch.Tensor) -> torch.Tensor:
        d = (dist.to(torch.float64) / self.cutoff)[:, None, None]  # [E, 1, 1]
        arg = self.zeros[None] * d  # [E, L, N]
        jl = spherical_bessel(self.num_spherical - 1, arg)  # [E, L, N, L]: j_m(z_{ln} d) for every m
        radial = torch.diagonal(jl, dim1=1, dim2=3).permute(0, 2, 1)  # [E, L, N]: j_l(z_{ln} d)
        radial = envelope(d, self.exponent) * self.norm[None] * radial
        cbf = self.ylm * legendre(self.num_spherical - 1, torch.cos(angle.to(torch.float64)))  # [T, L]
        out = radial[idx_kj] * cbf[:, :, None]  # [T, L, N]
        return out.reshape(len(idx_kj), -1).to(torch.float32)


class BesselBasis(nn.Module):
    """Radial basis e_n(d) = u(d/c) sin(f_n d/c), frequencies f_n trainable (initialised to nπ)."""

    def __init__(self, num_radial: int, cutoff: float, envelope_exponent: int):
        super().__init__()
        self.cutoff, self.exponent = float(cutoff), int(envelope_exponent)
        self.freq = nn.Parameter(torch.arange(1, num_radial + 1, dtype=torch.float32) * math.pi)

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        d = dist.to(torch.float64)[:, None] / self.cutoff
        return (envelope(d, self.exponent) * torch.sin(self.freq.to(torch.float64) * d)).to(torch.float32)


# ------------------------------------------------------------------------------ network blocks
def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class Residual(nn.Module):
    """x + σ(W₂ σ(W₁ x + b₁) + b₂)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + swish(self.lin2(swish(self.lin1(x))))


class Embedding(nn.Module):
    """Initial message of edge j → i: σ(W [h_Z(i), h_Z(j), σ(W_rbf e(d_ji))])."""

    def __init__(self, num_radial: int, hidden: int):
        super().__init__()
        self.emb = nn.Embedding(MAX_Z + 1, hidden)
        self.lin_rbf = nn.Linear(num_radial, hidden)
        self.lin = nn.Linear(3 * hidden, hidden)

    def forward(self, z, rbf, i, j):
        h = self.emb(z)
        return swish(self.lin(torch.cat([h[i], h[j], swish(self.lin_rbf(rbf))], dim=-1)))


class Interaction(nn.Module):
    """DimeNet++ interaction block: directional message passing over triplets k → j → i.

    m_kj is gated by the radial basis, projected down to ``int_emb`` channels, multiplied by the
    projected 2-D basis of each triplet, summed over k into edge ji, projected up, added to the
    transformed m_ji, then residual layers with a skip connection from the input.
    """

    def __init__(self, hidden: int, int_emb: int, basis_emb: int, num_spherical: int, num_radial: int,
                 num_before_skip: int, num_after_skip: int):
        super().__init__()
        self.lin_rbf1 = nn.Linear(num_radial, basis_emb, bias=False)
        self.lin_rbf2 = nn.Linear(basis_emb, hidden, bias=False)
        self.lin_sbf1 = nn.Linear(num_spherical * num_radial, basis_emb, bias=False)
        self.lin_sbf2 = nn.Linear(basis_emb, int_emb, bias=False)
        self.lin_kj = nn.Linear(hidden, hidden)
        self.lin_ji = nn.Linear(hidden, hidden)
        self.lin_down = nn.Linear(hidden, int_emb, bias=False)
        self.lin_up = nn.Linear(int_emb, hidden, bias=False)
        self.layers_before_skip = nn.ModuleList(Residual(hidden) for _ in range(num_before_skip))
        self.lin = nn.Linear(hidden, hidden)
        self.layers_after_skip = nn.ModuleList(Residual(hidden) for _ in range(num_after_skip))

    def forward(self, m, rbf, sbf, idx_kj, idx_ji):
        m_ji = swish(self.lin_ji(m))
        m_kj = swish(self.lin_kj(m)) * self.lin_rbf2(self.lin_rbf1(rbf))
        m_kj = swish(self.lin_down(m_kj))
        t = m_kj[idx_kj] * self.lin_sbf2(self.lin_sbf1(sbf))
        agg = torch.zeros(m.shape[0], t.shape[1], dtype=t.dtype, device=t.device).index_add_(0, idx_ji, t)
        h = m_ji + swish(self.lin_up(agg))
        for layer in self.layers_before_skip:
            h = layer(h)
        h = swish(self.lin(h)) + m
        for layer in self.layers_after_skip:
            h = layer(h)
        return h


class Output(nn.Module):
    """Per-atom output: Σ over incoming edges of (W_rbf e(d)) ⊙ m, then an MLP to ``out`` values."""

    def __init__(self, num_radial: int, hidden: int, out_emb: int, out: int, num_layers: int):
        super().__init__()
        self.lin_rbf = nn.Linear(num_radial, hidden, bias=False)
        self.lin_up = nn.Linear(hidden, out_emb)
        self.lins = nn.ModuleList(nn.Linear(out_emb, out_emb) for _ in range(num_layers))
        self.lin = nn.Linear(out_emb, out, bias=False)

    def forward(self, m, rbf, i, num_nodes: int):
        x = self.lin_rbf(rbf) * m
        x = torch.zeros(num_nodes, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, i, x)
        x = self.lin_up(x)
        for lin in self.lins:
            x = swish(lin(x))
        return self.lin(x)


def triplets(edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(idx_kj, idx_ji): every pair of edges k → j (idx_kj) and j → i (idx_ji) with atom k ≠ atom i.

    ``edge_index[0]`` is the source, ``edge_index[1]`` the target of each edge. Built without loops:
    edges are sorted by target, and edge j → i is paired with the block of edges whose target is j.
    """
    src, dst = edge_index
    order = torch.argsort(dst, stable=True)
    indeg = torch.bincount(dst, minlength=num_nodes)
    start = torch.cumsum(indeg, 0) - indeg
    count = indeg[src]  # edges k → j for each edge j → i
    idx_ji = torch.repeat_interleave(torch.arange(len(src), device=src.device), count)
    first = torch.repeat_interleave(start[src], count)
    offset = torch.arange(len(idx_ji), device=src.device) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    idx_kj = order[first + offset]
    keep = src[idx_kj] != dst[idx_ji]
    return idx_kj[keep], idx_ji[keep]


class DimeNetPlusPlus(nn.Module):
    """DimeNet++ with mean readout over each crystal's atoms (CDVAE's ``DimeNetPlusPlusWrap``)."""

    def __init__(self, num_targets: int = 1, hidden_channels: int = 128, num_blocks: int = 4, int_emb_size: int = 64,
                 basis_emb_size: int = 8, out_emb_channels: int = 256, num_spherical: int = 7, num_radial: int = 6,
                 cutoff: float = 7.0, envelope_exponent: int = 5, num_before_skip: int = 1, num_after_skip: int = 2,
                 num_output_layers: int = 3, readout: str = "mean", **_ignored):
        super().__init__()
        if readout not in ("mean", "sum"):
            raise ValueError(f"readout must be 'mean' or 'sum', got {readout!r}")
        self.readout = readout
        self.rbf = BesselBasis(num_radial, cutoff, envelope_exponent)
        self.sbf = SphericalBasis(num_spherical, num_radial, cutoff, envelope_exponent)
        self.emb = Embedding(num_radial, hidden_channels)
        self.interaction_blocks = nn.ModuleList(
            Interaction(hidden_channels, int_emb_size, basis_emb_size, num_spherical, num_radial, num_before_skip,
                        num_after_skip) for _ in range(num_blocks))
        self.output_blocks = nn.ModuleList(
            Output(num_radial, hidden_channels, out_emb_channels, num_targets, num_output_layers)
            for _ in range(num_blocks + 1))

    def forward(self, z, edge_index, edge_vec, batch, num_graphs: int) -> torch.Tensor:
        """Per-crystal outputs [num_graphs, num_targets].

        Args:
            z: [n] atomic numbers; edge_index: [2, E] (source j, target i); edge_vec: [E, 3] vector
            from atom i to the periodic image of atom j (Å, float64); batch: [n] crystal of each atom.
        """
        n = len(z)
        j, i = edge_index
        idx_kj, idx_ji = triplets(edge_index, n)
        dist = edge_vec.norm(dim=-1)
        # angle between the edge j → i (as i → j) and the edge k → j (as j → k): CDVAE's convention
        v_ji, v_kj = edge_vec[idx_ji], edge_vec[idx_kj]
        angle = torch.atan2(torch.linalg.cross(v_ji, v_kj).norm(dim=-1), (v_ji * v_kj).sum(-1))
        rbf = self.rbf(dist)
        sbf = self.sbf(dist, angle, idx_kj)
        m = self.emb(z, rbf, i, j)
        per_atom = self.output_blocks[0](m, rbf, i, n)
        for block, out in zip(self.interaction_blocks, self.output_blocks[1:], strict=True):
            m = block(m, rbf, sbf, idx_kj, idx_ji)
            per_atom = per_atom + out(m, rbf, i, n)
        total = torch.zeros(num_graphs, per_atom.shape[1], dtype=per_atom.dtype).index_add_(0, batch, per_atom)
        if self.readout == "sum":
            return total
        counts = torch.bincount(batch, minlength=num_graphs).clamp(min=1).to(per_atom.dtype)
        return total / counts[:, None]


# ------------------------------------------------------------------------------ graphs
@dataclass(frozen=True)
class CrystalGraph:
    """CrystalNN graph of one crystal: atomic numbers [n], Cartesian positions [n, 3] (Å), lattice
    rows [3, 3] (Å), directed edges [2, E] (source, target) and the target→source image shift [E, 3]."""

    numbers: np.ndarray
    positions: np.ndarray
    lattice: np.ndarray
    edge_index: np.ndarray
    images: np.ndarray


@lru_cache(maxsize=1)
def _crystalnn_strategy():
    from pymatgen.analysis.local_env import CrystalNN

    return CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)


def crystal_graph(structure) -> CrystalGraph:
    """CDVAE's CrystalNN graph of a pymatgen Structure (rebuilt from lattice parameters; see module doc)."""
    from pymatgen.analysis.graphs import StructureGraph
    from pymatgen.core import Lattice, Structure

    canonical = Structure(Lattice.from_parameters(*structure.lattice.parameters), structure.species,
                          structure.frac_coords, coords_are_cartesian=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = StructureGraph.from_local_env_strategy(canonical, _crystalnn_strategy())
    bonds = [(a, b, tuple(img)) for a, b, img in graph.graph.edges(data="to_jimage")]
    if bonds:
        a, b, img = (np.asarray(x) for x in zip(*bonds, strict=True))
        img = img.reshape(-1, 3).astype(np.int64)
        # bond a → b (image t) gives edges b → a with shift t and a → b with shift −t
        edge_index = np.stack([np.stack([b, a], 1), np.stack([a, b], 1)], 1).reshape(-1, 2).T.astype(np.int64)
        images = np.stack([img, -img], 1).reshape(-1, 3)
    else:
        edge_index, images = np.zeros((2, 0), np.int64), np.zeros((0, 3), np.int64)
    numbers = np.array([sp.Z for sp in canonical.species], dtype=np.int64)
    return CrystalGraph(numbers, canonical.cart_coords, canonical.lattice.matrix, edge_index, images)


def collate(graphs: Sequence[CrystalGraph]) -> dict:
    """One batch of graphs as tensors: node offsets added to edge indices, image shifts turned into
    edge vectors (float64) with each crystal's lattice."""
    n_atoms = np.array([len(g.numbers) for g in graphs], dtype=np.int64)
    n_edges = np.array([g.edge_index.shape[1] for g in graphs], dtype=np.int64)
    node_offset = np.repeat(np.cumsum(n_atoms) - n_atoms, n_edges)
    edge_index = np.concatenate([g.edge_index for g in graphs], axis=1) + node_offset[None]
    images = np.concatenate([g.images for g in graphs]).astype(np.float64)
    lattices = np.stack([g.lattice for g in graphs])
    pos = np.concatenate([g.positions for g in graphs])
    edge_lat = lattices[np.repeat(np.arange(len(graphs)), n_edges)]
    src, dst = edge_index
    edge_vec = pos[src] + np.einsum("ek,ekl->el", images, edge_lat) - pos[dst]
    return {
        "z": torch.as_tensor(np.concatenate([g.numbers for g in graphs])),
        "edge_index": torch.as_tensor(edge_index),
        "edge_vec": torch.as_tensor(edge_vec),
        "batch": torch.as_tensor(np.repeat(np.arange(len(graphs)), n_atoms)),
        "num_graphs": len(graphs),
    }


# ------------------------------------------------------------------------------ the model
class PropertyModel(nn.Module):
    """A CDVAE property model: DimeNet++ encoder → standardised target → ``× std + mean``.

    Attributes:
        target: the predicted property (``formation_energy_per_atom``, ``heat_ref``, ``energy_per_atom``).
        name: the model folder's name.
    """

    def __init__(self, hparams: dict, mean: float, std: float, name: str = ""):
        super().__init__()
        self.encoder = DimeNetPlusPlus(**hparams["encoder_hparams"])
        self.target = str(hparams.get("target", "property"))
        self.name = name
        self.weights_hash = ""
        self.register_buffer("mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("std", torch.tensor(float(std)), persistent=False)

    @classmethod
    def load(cls, name_or_path: str | os.PathLike, models_dir: str | os.PathLike | None = None) -> PropertyModel:
        """Load ``model.safetensors`` + ``hparams.json`` + ``prop_scaler.json`` (name or folder)."""
        from safetensors.torch import load_file

        from ..data.registry import sha256_uncompressed

        folder = resolve_property_model(name_or_path, models_dir)
        try:
            hparams = json.loads((folder / "hparams.json").read_text())
            scaler = json.loads((folder / "prop_scaler.json").read_text())
            model = cls(hparams, float(np.ravel(scaler["means"])[0]), float(np.ravel(scaler["stds"])[0]), folder.name)
            model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
            model.weights_hash = sha256_uncompressed(folder / "model.safetensors")
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise ValueError(f"cannot load the property model in {folder}: {err}") from None
        return model.eval()

    @torch.no_grad()
    def forward_batch(self, batch: dict) -> torch.Tensor:
        """Predictions in the target's units for a collated batch: [num_graphs]."""
        out = self.encoder(batch["z"], batch["edge_index"], batch["edge_vec"], batch["batch"], batch["num_graphs"])
        return out[:, 0].double() * self.std.double() + self.mean.double()

    def predict_graphs(self, graphs: Sequence[CrystalGraph | None], batch_size: int = 256) -> np.ndarray:
        """Predictions for graphs (NaN for None or atoms beyond Z = 94)."""
        out = np.full(len(graphs), np.nan)
        ok = [k for k, g in enumerate(graphs) if g is not None and len(g.numbers) and g.numbers.max() <= MAX_Z]
        for s in range(0, len(ok), batch_size):
            ids = ok[s:s + batch_size]
            out[ids] = self.forward_batch(collate([graphs[k] for k in ids])).numpy()
        return out

    def predict(self, structures: Sequence, batch_size: int = 256) -> np.ndarray:
        """Predictions for pymatgen Structures (NaN where the graph cannot be built)."""
        return self.predict_graphs([safe_crystal_graph(s) for s in structures], batch_size)

    def describe(self) -> str:
        return f"DimeNet++ property model '{self.name}' (CDVAE CrystGNN_Supervise): predicted {self.target}"


def safe_crystal_graph(structure) -> CrystalGraph | None:
    """:func:`crystal_graph`, or None if CrystalNN fails on the structure."""
    if structure is None:
        return None
    try:
        return crystal_graph(structure)
    except Exception:  # noqa: BLE001 - no graph, no prediction
        return None


__all__ = [
    "DATASET_PROPERTY_MODEL",
    "PROPERTY_MODELS_ENV",
    "CrystalGraph",
    "DimeNetPlusPlus",
    "PropertyModel",
    "collate",
    "crystal_graph",
    "default_property_models_dir",
    "envelope",
    "legendre",
    "resolve_property_model",
    "safe_crystal_graph",
    "spherical_bessel",
    "spherical_bessel_zeros",
    "triplets",
]
