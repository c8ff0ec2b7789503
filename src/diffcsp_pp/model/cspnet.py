"""CSPNet denoiser (METHOD §5), written as the paper writes it: the reference implementation.

Inputs per crystal: k_t (the 6 lattice coefficients, fed raw to every edge), the integer time
step t (sinusoidal embedding); per atom: the atom type (an embedding of Z for CSP, a linear map of
the noisy one-hot for ab initio generation) and fractional coordinates, seen only through Fourier
features of ``d_ij = x_j - x_i`` (integer frequencies, so ψ is periodic: invariant to a global
translation and to the ``mod 1`` wrap of d). Outputs: per-atom coordinate scores [N, 3],
per-crystal lattice noise [B, 6] and, for generation, per-atom type noise [N, 100].

One layer (:class:`CSPLayer`), over every ordered pair (i, j) of a crystal, self-loops included::

    m_ij = SiLU(W2 · SiLU(W1 · [LN(h_i), LN(h_j), k, ψ(x_j - x_i)] + b1) + b2)
    h_i ← h_i + SiLU(W4 · SiLU(W3 · [LN(h_i), mean_j m_ij] + b3) + b4)

W1 (``edge_in``) is stored as one Linear so that the bundled weights load unchanged; its named
blocks (:class:`EdgeBlocks`: ``h_i``, ``h_j``, ``lattice``, ``sin``, ``cos``) are the only place
that knows the column offsets. :meth:`CSPNet.reference` runs these layers as written;
:meth:`CSPNet.forward` — what training and sampling call — computes the same outputs with less work
(:mod:`diffcsp_pp.model.fast`: the node and lattice blocks applied per atom, the Fourier block on
unordered pairs, one row per class of atoms related by a centring translation, products that the
Wyckoff operations fix precomputed once per sampled batch),
tested equal to the reference on the bundled weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..symmetry.constants import NUM_ELEMENTS
from .fast import edge_layout, fast_layers
from .fast import fourier_plan as _fourier_plan
from .features import fourier_args, fourier_features, sinusoidal_time_embedding

__all__ = ["CSPLayer", "CSPNet", "DenoiserOutput", "EdgeBlocks", "ModelConfig", "fourier_args", "fourier_features",
           "sinusoidal_time_embedding"]


@dataclass(frozen=True)
class ModelConfig:
    """Network shape. ``task`` is ``"csp"`` (types given) or ``"gen"`` (types diffused)."""

    hidden: int = 512
    num_layers: int = 6
    num_freqs: int = 128
    time_dim: int = 256
    task: str = "csp"

    def __post_init__(self):
        if self.task not in ("csp", "gen"):
            raise ValueError(f"task must be 'csp' or 'gen', got {self.task!r}")
        for name in ("hidden", "num_layers", "num_freqs", "time_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.time_dim % 2:
            raise ValueError(f"time_dim must be even, got {self.time_dim}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DenoiserOutput:
    """Network outputs: ``pred_eps_k`` [B, 6], ``pred_score_x`` [N, 3], ``pred_eps_a`` [N, 100] or None."""

    pred_eps_k: torch.Tensor
    pred_score_x: torch.Tensor
    pred_eps_a: torch.Tensor | None


@dataclass(frozen=True)
class EdgeBlocks:
    """The first edge layer W1 by the input it reads (views of ``edge_in.weight`` [H, 2H + 6 + 6F]):
    ``h_i``, ``h_j`` [H, H], ``lattice`` [H, 6], ``sin``, ``cos`` [H, 3F] (columns component-major,
    as :func:`fourier_features`), and ``bias`` [H]."""

    h_i: torch.Tensor
    h_j: torch.Tensor
    lattice: torch.Tensor
    sin: torch.Tensor
    cos: torch.Tensor
    bias: torch.Tensor


class CSPLayer(nn.Module):
    """One message-passing layer of the paper (see the module docstring): pre-LayerNorm, edge MLP
    on ``[h_i, h_j, k, ψ(x_j - x_i)]``, mean over j, residual node MLP."""

    def __init__(self, hidden: int, fourier_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.edge_in = nn.Linear(2 * hidden + 6 + fourier_dim, hidden)  # W1, named blocks: edge_blocks()
        self.edge_out = nn.Linear(hidden, hidden)  # W2
        self.node_in = nn.Linear(2 * hidden, hidden)  # W3 on [LN(h_i), mean_j m_ij]
        self.node_out = nn.Linear(hidden, hidden)  # W4
        self.hidden = hidden
        self.act = nn.SiLU()

    def edge_blocks(self) -> EdgeBlocks:
        """W1's named blocks (the one place that knows its column layout)."""
        H, w = self.hidden, self.edge_in.weight
        half = (w.shape[1] - 2 * H - 6) // 2  # 3F: the sine half of ψ, then the cosine half
        start = 2 * H + 6
        return EdgeBlocks(h_i=w[:, :H], h_j=w[:, H : 2 * H], lattice=w[:, 2 * H : start],
                          sin=w[:, start : start + half], cos=w[:, start + half :], bias=self.edge_in.bias)

    def message(self, pre: torch.Tensor) -> torch.Tensor:
        """Edge message from W1's output: SiLU(W2 · SiLU(pre) + b2)."""
        return self.act(self.edge_out(self.act(pre)).to(pre.dtype))  # (under bf16 autocast: SiLU in fp32, faster on CPU)

    def update(self, h: torch.Tensor, hn: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        """Residual node update from the normalised features and the mean message."""
        return h + self.act(self.node_out(self.act(self.node_in(torch.cat([hn, agg], dim=-1)))))

    def forward(self, h, k_edge, psi, edge_src, edge_dst, inv_count):
        """The paper's layer on an explicit edge list: h [N, H]; k_edge [E, 6] the lattice vector of
        each edge's crystal; psi [E, 6F] = ψ(x_j - x_i); edges (i = edge_src, j = edge_dst) all
        ordered pairs of each crystal, self-loops included; inv_count [N, 1] = 1 / atoms of i's crystal."""
        hn = self.norm(h)
        m = self.message(self.edge_in(torch.cat([hn[edge_src], hn[edge_dst], k_edge, psi], dim=-1)))  # [E, H]
        agg = m.new_zeros(h.shape).index_add_(0, edge_src, m) * inv_count  # [N, H]: mean over j
        return self.update(h, hn, agg)


class CSPNet(nn.Module):
    """The denoiser. See the module docstring."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        H = config.hidden
        if config.task == "csp":
            self.type_embed: nn.Module = nn.Embedding(NUM_ELEMENTS, H)
        else:
            self.type_embed = nn.Linear(NUM_ELEMENTS, H)
        self.node_init = nn.Linear(H + config.time_dim, H)
        fourier_dim = 6 * config.num_freqs
        self.layers = nn.ModuleList(CSPLayer(H, fourier_dim) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(H)
        self.coord_head = nn.Linear(H, 3, bias=False)
        self.lattice_head = nn.Linear(H, 6, bias=False)
        self.type_head = nn.Linear(H, NUM_ELEMENTS) if config.task == "gen" else None

    def embed(self, batch, t, atom_input, rows=None) -> torch.Tensor:
        """h⁰ [N, H] = node_init([type embedding; time embedding of the atom's crystal]); with
        ``rows`` [R], of those atoms only."""
        dtype = self.node_init.weight.dtype
        batch_idx = batch.batch_idx
        if rows is not None:
            atom_input, batch_idx = atom_input[rows], batch_idx[rows]
        if self.config.task == "csp":
            h = self.type_embed(atom_input - 1)
        else:
            h = self.type_embed(atom_input.to(dtype))
        temb = sinusoidal_time_embedding(t, self.config.time_dim).to(dtype)[batch_idx]
        return self.node_init(torch.cat([h, temb], dim=-1))

    def heads(self, batch, h, rows=None, row_of=None) -> DenoiserOutput:
        """The outputs from the last layer's h: per-atom heads on LN(h), the lattice head on its crystal mean.

        ``rows`` [R] / ``row_of`` [N]: h holds only these atoms (one per class of translated atoms,
        each class of one crystal the same size), and atom i's outputs are those of row ``row_of[i]``."""
        h = self.final_norm(h)
        if rows is None:
            batch_idx, count = batch.batch_idx, batch.num_atoms
        else:
            batch_idx = batch.batch_idx[rows]
            count = torch.bincount(batch_idx, minlength=batch.num_graphs)
        pooled = torch.zeros(batch.num_graphs, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, batch_idx, h)
        pooled = pooled / count.to(h.dtype)[:, None]
        score, types = self.coord_head(h), self.type_head(h) if self.type_head is not None else None
        if row_of is not None:
            score, types = score[row_of], types[row_of] if types is not None else None
        return DenoiserOutput(pred_eps_k=self.lattice_head(pooled), pred_score_x=score, pred_eps_a=types)

    def reference(self, batch, k_t, frac_coords_t, t, atom_input) -> DenoiserOutput:
        """The network as the paper writes it (every ordered edge through :class:`CSPLayer`):
        the specification :meth:`forward` is tested against. Arguments as :meth:`forward`."""
        src, dst = batch.edge_src, batch.edge_dst
        dtype = self.node_init.weight.dtype
        h = self.embed(batch, t, atom_input)
        with torch.no_grad():  # METHOD §5: the Fourier features carry no gradient
            psi = fourier_features(frac_coords_t[dst] - frac_coords_t[src], self.config.num_freqs).to(dtype)
        k_edge = k_t.to(dtype)[batch.batch_idx[src]]
        inv_count = (1.0 / batch.num_atoms.to(dtype))[batch.batch_idx][:, None]
        for layer in self.layers:
            h = layer(h, k_edge, psi, src, dst, inv_count)
        return self.heads(batch, h)

    def forward(self, batch, k_t, frac_coords_t, t, atom_input, plan=None) -> DenoiserOutput:
        """The same outputs as :meth:`reference`, computed the fast way (:mod:`diffcsp_pp.model.fast`).

        Args:
            batch: a :class:`~diffcsp_pp.data.batch.CrystalBatch` (graph structure only is read).
            k_t: [B, 6] noisy lattice coefficients.
            frac_coords_t: [N, 3] noisy fractional coordinates.
            t: [B] integer time steps 1..T.
            atom_input: [N] long Z (CSP) or [N, 100] noisy one-hot (generation).
            plan: :meth:`fourier_plan` of this batch (sampling), or None (everything computed).
        """
        layout = edge_layout(batch, frac_coords_t, atom_input)
        h = fast_layers(self, batch, self.embed(batch, t, atom_input, layout.rows), k_t, frac_coords_t, plan, layout)
        return self.heads(batch, h, layout.rows, layout.row_of)

    def fourier_plan(self, batch):
        """The Fourier products of ``batch`` that sampling never changes (:func:`diffcsp_pp.model.fast.fourier_plan`)."""
        return _fourier_plan(self, batch)
