"""Batches of crystals for the network: concatenated per-atom tensors with explicit index offsets.

A :class:`CrystalDataset` keeps every crystal of a preprocessed file as concatenated numpy arrays
(no per-item Python objects); :func:`collate` turns a list of crystal indices into a
:class:`CrystalBatch`. Anchor indices are offset to global atom rows here, in one place, and the
fully connected edge list (self-loops included) is built without Python loops over crystals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from ..symmetry.templates import SymmetryTemplate
from ..symmetry.wyckoff import translation_partners


@dataclass
class CrystalBatch:
    """A batch of B crystals with N atoms in total and E = Σ n_b² edges.

    Attributes:
        frac_coords: [N, 3] fractional coordinates in [0, 1).
        atom_types: [N] long atomic numbers Z.
        wyckoff_ops: [N, 4, 4] affine op from the orbit anchor to atom i.
        rot_pinv: [N, 3, 3] pseudo-inverse of each op's linear part.
        anchor_idx: [N] long global row of atom i's orbit anchor.
        batch_idx: [N] long crystal of atom i.
        num_atoms: [B] long atoms per crystal.
        space_group: [B] long, 1-230.
        k: [B, 6] lattice coefficients.
        edge_src, edge_dst: [E] long; all ordered pairs (i, j) within a crystal, in the layout of
            :func:`fully_connected_edges` (pairs i < j, the same reversed, self-loops); read by the
            reference network only.
        node_rep, node_of, red_src, red_dst, red_pairs, red_half: the layout the fast network
            computes on (:class:`ReducedEdges`, built by :func:`reduced_edges`): atoms that a
            centring translation maps onto each other share one row.
    """

    frac_coords: torch.Tensor
    atom_types: torch.Tensor
    wyckoff_ops: torch.Tensor
    rot_pinv: torch.Tensor
    anchor_idx: torch.Tensor
    batch_idx: torch.Tensor
    num_atoms: torch.Tensor
    space_group: torch.Tensor
    k: torch.Tensor
    edge_src: torch.Tensor
    edge_dst: torch.Tensor
    node_rep: torch.Tensor | None = None
    node_of: torch.Tensor | None = None
    red_src: torch.Tensor | None = None
    red_dst: torch.Tensor | None = None
    red_pairs: int = 0
    red_half: int = 0

    @property
    def num_graphs(self) -> int:
        return int(self.num_atoms.shape[0])

    def to(self, device=None, dtype: torch.dtype | None = None) -> CrystalBatch:
        """Move to a device; floating tensors optionally cast to ``dtype``."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, torch.Tensor):
                out[f.name] = value
                continue
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            out[f.name] = value.to(device) if device is not None else value
        return CrystalBatch(**out)


def fully_connected_edges(num_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (i, j), self-loops included, within each crystal: ([E], [E]), E = Σ n².

    Order: the P unordered pairs as (i, j) with i < j, then the same P pairs reversed (j, i), then the
    N self-loops (i, i). The denoiser uses this layout to evaluate the Fourier features, which are
    odd (sin) or even (cos) in ``x_j - x_i``, on the P pairs only (METHOD §5; half the work).
    """
    offsets = torch.cumsum(num_atoms, 0) - num_atoms  # [B]
    per_graph = num_atoms * num_atoms  # [B]
    graph = torch.repeat_interleave(torch.arange(num_atoms.shape[0]), per_graph)  # [Σn²]
    start = torch.repeat_interleave(torch.cumsum(per_graph, 0) - per_graph, per_graph)
    local = torch.arange(int(per_graph.sum())) - start  # position within its crystal's n x n block
    n = num_atoms[graph]
    i, j = local // n, local % n
    upper = i < j
    src_u, dst_u = (i + offsets[graph])[upper], (j + offsets[graph])[upper]
    diag = torch.arange(int(num_atoms.sum()))
    return torch.cat([src_u, dst_u, diag]), torch.cat([dst_u, src_u, diag])


@dataclass
class ReducedEdges:
    """The rows the fast network computes (:mod:`diffcsp_pp.model.fast`) when centring translations
    map a crystal onto itself.

    A pure translation s of the space group maps the (always symmetric) crystal onto itself and
    changes no difference ``x_j - x_i``, so atoms i and i + s get the same features in every layer:
    the network needs one row per class of translated atoms (``node_rep``, the lowest atom of each
    class; ``node_of`` maps every atom to its row) and only the edges (i, j) whose i is such a row,
    j any atom of the crystal — 1/c of the n² edges of a cell with c translations (I, C: 2; R: 3;
    F: 4). Among these, the edge (i, j) and ``σ(i, j) = (rep(j), i + s)``, with s moving j onto
    rep(j), have opposite differences, which the odd/even Fourier trick uses as it uses (i, j) and
    (j, i) of a primitive cell. The edge layout is: the ``pairs`` edges with ``e < σ(e)``, their
    partners σ(e) in the same order, the ``half`` edges with ``σ(e) = e`` other than self-loops
    (j = i + s with 2s ≡ 0: a constant difference s), then one self-loop per row. For crystals
    without centring (and a batch of them), this is exactly :func:`fully_connected_edges`.
    """

    node_rep: torch.Tensor  # [R] atom of each row
    node_of: torch.Tensor  # [N] row of each atom
    src: torch.Tensor  # [E_r] atom i of each edge (always a row's atom)
    dst: torch.Tensor  # [E_r] atom j of each edge
    pairs: int
    half: int


def reduced_edges(num_atoms: torch.Tensor, partners: torch.Tensor) -> ReducedEdges:
    """The reduced layout (:class:`ReducedEdges`) of a batch from each atom's translation partners
    (:func:`~diffcsp_pp.symmetry.wyckoff.translation_partners`, global rows in the batch, -1 unused)."""
    n_total = int(num_atoms.sum())
    atoms = torch.arange(n_total)
    offsets = torch.cumsum(num_atoms, 0) - num_atoms
    crystal = torch.repeat_interleave(torch.arange(num_atoms.shape[0]), num_atoms)
    images = torch.where(partners >= 0, partners, atoms[:, None])  # the atom itself where unused
    rep, shift = images.min(1)  # class representative = its lowest atom; the translation that reaches it
    is_rep = rep == atoms
    node_rep = torch.nonzero(is_rep).squeeze(1)
    row_of_atom = torch.cumsum(is_rep.long(), 0) - 1  # valid at representatives
    node_of = row_of_atom[rep]
    row_len = num_atoms[crystal[node_rep]]  # every row sees all atoms of its crystal
    row_start = torch.cumsum(row_len, 0) - row_len
    e_row = torch.repeat_interleave(torch.arange(node_rep.shape[0]), row_len)
    edges = torch.arange(int(row_len.sum()))
    local_j = edges - row_start[e_row]
    src = node_rep[e_row]
    dst = offsets[crystal[src]] + local_j
    # σ(i, j) = (rep(j), i moved by the translation that takes j to rep(j))
    moved_i = images[src, shift[dst]]
    sigma = row_start[node_of[dst]] + (moved_i - offsets[crystal[src]])
    first = edges < sigma
    fixed = edges == sigma
    self_loop = src == dst
    half = fixed & ~self_loop
    pair_e = torch.nonzero(first).squeeze(1)
    order = torch.cat([pair_e, sigma[pair_e], torch.nonzero(half).squeeze(1), torch.nonzero(self_loop).squeeze(1)])
    return ReducedEdges(node_rep, node_of, src[order], dst[order], int(pair_e.shape[0]), int(half.sum()))


class CrystalDataset(torch.utils.data.Dataset):
    """Crystals (SymmetryInfo) or templates (SymmetryTemplate) as concatenated arrays;
    ``dataset[i]`` is the crystal index i (collated later)."""

    def __init__(self, infos: Sequence[SymmetryTemplate], dtype: torch.dtype = torch.float32):
        if len(infos) == 0:
            raise ValueError("a dataset needs at least one crystal")
        self.num_atoms = np.array([i.num_atoms for i in infos], dtype=np.int64)
        self.atom_offsets = np.concatenate([[0], np.cumsum(self.num_atoms)])
        self.space_group = np.array([i.space_group for i in infos], dtype=np.int64)
        # templates (no structure yet) carry no k / coordinates: zeros, to be replaced by the prior
        self.k = np.stack([getattr(i, "k", np.zeros(6)) for i in infos]).astype(np.float64)
        self.frac_coords = np.concatenate([getattr(i, "frac_coords", np.zeros((i.num_atoms, 3))) for i in infos])
        self.atom_types = np.concatenate([i.atom_types for i in infos]).astype(np.int64)
        self.wyckoff_ops = np.concatenate([i.wyckoff_ops for i in infos])
        self.rot_pinv = np.linalg.pinv(self.wyckoff_ops[:, :3, :3])
        self.anchor_local = np.concatenate([i.anchor_idx for i in infos]).astype(np.int64)
        self.ids = [getattr(i, "structure_id", None) for i in infos]
        self.dtype = dtype
        # each atom's images under its crystal's centring translations, local rows (-1 unused)
        crystal = np.repeat(np.arange(len(infos)), self.num_atoms)
        partners, _ = translation_partners(self.wyckoff_ops, self.anchor_local + self.atom_offsets[crystal], crystal,
                                           self.space_group)
        self.partners_local = np.where(partners >= 0, partners - self.atom_offsets[crystal][:, None], -1)

    def __len__(self) -> int:
        return int(self.num_atoms.shape[0])

    def __getitem__(self, index: int) -> int:
        return int(index)

    def collate(self, indices: Sequence[int]) -> CrystalBatch:
        """A batch of the given crystals (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        n = self.num_atoms[idx]
        starts = self.atom_offsets[idx]
        # atom rows of the selected crystals, concatenated (vectorised ragged gather)
        rows = np.repeat(starts - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(n.sum())
        new_offsets = np.repeat(np.cumsum(n) - n, n)
        num_atoms = torch.from_numpy(n)
        src, dst = fully_connected_edges(num_atoms)
        local = self.partners_local[rows]
        reduced = reduced_edges(num_atoms, torch.from_numpy(np.where(local >= 0, local + new_offsets[:, None], -1)))
        return CrystalBatch(
            frac_coords=torch.from_numpy(self.frac_coords[rows]).to(self.dtype),
            atom_types=torch.from_numpy(self.atom_types[rows]),
            wyckoff_ops=torch.from_numpy(self.wyckoff_ops[rows]).to(self.dtype),
            rot_pinv=torch.from_numpy(self.rot_pinv[rows]).to(self.dtype),
            anchor_idx=torch.from_numpy(self.anchor_local[rows] + new_offsets),
            batch_idx=torch.from_numpy(np.repeat(np.arange(idx.size), n)),
            num_atoms=num_atoms,
            space_group=torch.from_numpy(self.space_group[idx]),
            k=torch.from_numpy(self.k[idx]).to(self.dtype),
            edge_src=src,
            edge_dst=dst,
            node_rep=reduced.node_rep,
            node_of=reduced.node_of,
            red_src=reduced.src,
            red_dst=reduced.dst,
            red_pairs=reduced.pairs,
            red_half=reduced.half,
        )


class EpochBatchSampler(torch.utils.data.Sampler):
    """Deterministic, resumable batches: epoch e's order is a pure function of (seed, e).

    ``position_fn`` returns how many training batches the run has consumed so far (stored in the
    checkpoint). Each iteration starts at that position: epoch ``position // len(self)``, batch
    ``position % len(self)``. A fresh epoch therefore starts at its first batch and a run resumed
    mid-epoch continues with exactly the batch it would have trained next. Without ``position_fn``
    (validation) every iteration is epoch 0 from its start. With ``world_size > 1`` each rank takes
    every ``world_size``-th batch of the same global order.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, shuffle: bool = True,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1, position_fn=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.position_fn = position_fn

    def _global_batches(self, epoch: int) -> list[np.ndarray]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
        else:
            order = np.arange(self.num_items)
        batches = [order[i : i + self.batch_size] for i in range(0, self.num_items, self.batch_size)]
        if self.drop_last and len(batches) > 1 and len(batches[-1]) < self.batch_size:
            batches = batches[:-1]
        if len(batches) >= self.world_size:  # every rank gets the same number of batches
            batches = batches[: len(batches) - len(batches) % self.world_size]
        return batches

    def __len__(self) -> int:
        n = -(-self.num_items // self.batch_size)
        if self.drop_last and n > 1 and self.num_items % self.batch_size:
            n -= 1
        return max(1, n // self.world_size)

    def __iter__(self):
        position = int(self.position_fn()) if self.position_fn is not None else 0
        epoch, start = divmod(position, len(self))
        mine = self._global_batches(epoch)[self.rank :: self.world_size]
        for batch in mine[start:]:
            yield batch.tolist()
