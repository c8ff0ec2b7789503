"""CSPNet denoiser (METHOD §5): message passing over the fully connected graph of each crystal.

Inputs per crystal: k_t (the 6 lattice coefficients, fed raw to every edge), the integer time
step t (sinusoidal embedding); per atom: the atom type (an embedding of Z for CSP, a linear map of
the noisy one-hot for ab initio generation) and fractional coordinates, seen only through Fourier
features of ``x_j - x_i`` (integer frequencies, so invariant to a global translation and to the
``mod 1`` wrap). Outputs: per-atom coordinate scores [N, 3], per-crystal lattice noise [B, 6] and,
for generation, per-atom type noise [N, 100].

Speed (same parameters and outputs as the paper's layer, computed with less work):

- the first edge linear layer acts on ``[h_i, h_j, k, ψ_ij]``; its weight is split into node,
  lattice and Fourier blocks; the node and lattice blocks are applied once per atom / crystal and
  gathered onto edges, so only the Fourier block is a per-edge matrix product;
- ψ's sine half is odd and its cosine half even in ``x_j - x_i``: with ``S = sin·W_s`` and
  ``C = cos·W_c`` on the unordered pairs i < j, edge (i, j) gets ``C + S``, edge (j, i) gets ``C - S``
  and a self-loop the constant ``W_c·1``, which halves the dominant matrix products;
- the Fourier features are computed once per forward pass, not once per layer;
- in sampling, a :class:`FourierPlan` built once per batch (:meth:`CSPNet.fourier_plan`) holds the
  Fourier products of every (pair, axis) whose difference ``x_j - x_i`` the Wyckoff operations fix
  (both atoms on positions with that coordinate fixed, or two atoms of one orbit whose operations
  share that row, e.g. centering translations); each evaluation then recomputes only the varying
  entries. Perov-5's polar cells vary along one axis only, so two thirds of the dominant product
  disappear; the result equals the full product up to float rounding (tested).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..symmetry.wyckoff import fixed_pair_axes

NUM_ELEMENTS = 100


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


def sinusoidal_time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[B, dim] embedding of integer steps t [B]: [sin(t f_j), cos(t f_j)], f_j = 10⁻⁴^(j/(dim/2-1))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
    arg = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([arg.sin(), arg.cos()], dim=-1)


def fourier_args(values: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """``2π f v`` for f = 0..F-1: [..., F] from values [...]."""
    freqs = 2.0 * math.pi * torch.arange(num_freqs, device=values.device, dtype=values.dtype)
    return values[..., None] * freqs


def fourier_features(diff: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """[E, 6F] features ``[sin(2π f d), cos(2π f d)]`` for f = 0..F-1 of each component of d [E, 3]."""
    arg = fourier_args(diff, num_freqs).reshape(diff.shape[0], -1)  # [E, 3F], component-major
    return torch.cat([arg.sin(), arg.cos()], dim=-1)


@dataclass
class FourierPlan:
    """The Fourier products of one batch that do not change during sampling (see the module docstring).

    ``odd_const`` / ``even_const`` [P, L·H]: the sine / cosine products of all layers summed over the
    fixed (pair, axis) entries; ``var_pairs[c]``: the pairs whose axis-c difference varies (None: all
    pairs); ``w_sin[c]`` / ``w_cos[c]`` [L·H, F]: the weight blocks of axis c. Valid for the weights
    it was built with (the sampler builds it under ``no_grad`` with frozen weights).
    """

    odd_const: torch.Tensor
    even_const: torch.Tensor
    var_pairs: tuple
    w_sin: tuple
    w_cos: tuple


class CSPLayer(nn.Module):
    """One message-passing layer: pre-LayerNorm, edge MLP, mean aggregation, residual node MLP."""

    def __init__(self, hidden: int, fourier_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        # edge MLP on [h_i, h_j, k, ψ_ij] (2H + 6 + 6F -> H -> H), stored as one Linear
        self.edge_in = nn.Linear(2 * hidden + 6 + fourier_dim, hidden)
        self.edge_out = nn.Linear(hidden, hidden)
        self.node_in = nn.Linear(2 * hidden, hidden)
        self.node_out = nn.Linear(hidden, hidden)
        self.hidden = hidden
        self.act = nn.SiLU()

    def fourier_weights(self, fourier_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The sine and cosine blocks [H, 3F] of the first edge layer's weight."""
        start = 2 * self.hidden + 6
        w = self.edge_in.weight
        return w[:, start : start + fourier_dim // 2], w[:, start + fourier_dim // 2 :]

    def forward(self, h, k, odd, even, edge_src, edge_dst, batch_idx, inv_count):
        """h [N, H], k [B, 6]; odd = sin·W_sinᵀ and even = cos·W_cosᵀ [P, H] on the pairs i < j;
        edges [E = 2P + N] in the layout of ``fully_connected_edges``; batch_idx [N];
        inv_count [N, 1] = 1 / atoms of i's crystal."""
        hn = self.norm(h)
        H = self.hidden
        w = self.edge_in.weight  # [H, 2H + 6 + 6F]
        # h_i and h_j blocks in one product: [N, 2H] = hn [W_i; W_j]ᵀ
        node_src, node_dst = (hn @ w[:, : 2 * H].reshape(H, 2, H).transpose(0, 1).reshape(2 * H, H).t()).split(H, 1)
        node_src = node_src + (k @ w[:, 2 * H : 2 * H + 6].t() + self.edge_in.bias)[batch_idx]  # [N, H]
        w_cos_sum = self.fourier_weights(w.shape[1] - 2 * H - 6)[1].sum(1)  # cos(0) = 1 on self-loops
        pre = torch.cat([even + odd, even - odd, w_cos_sum.expand(h.shape[0], H)])  # [E, H]
        pre += node_src.index_select(0, edge_src)
        pre += node_dst.index_select(0, edge_dst)
        msg = self.act(self.edge_out(self.act(pre)))  # [E, H]
        agg = torch.zeros_like(h).index_add_(0, edge_src, msg) * inv_count  # [N, H] mean over j
        return h + self.act(self.node_out(self.act(self.node_in(torch.cat([hn, agg], dim=-1)))))


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

    def _fourier_blocks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sine and cosine weight blocks of all layers, stacked: two [L·H, 3F] matrices."""
        blocks = [layer.fourier_weights(6 * self.config.num_freqs) for layer in self.layers]
        return torch.cat([b[0] for b in blocks]), torch.cat([b[1] for b in blocks])

    @torch.no_grad()
    def fourier_plan(self, batch) -> FourierPlan:
        """The fixed part of the Fourier products of ``batch`` (see :class:`FourierPlan`)."""
        F = self.config.num_freqs
        num_pairs = (batch.edge_src.shape[0] - batch.batch_idx.shape[0]) // 2
        src, dst = batch.edge_src[:num_pairs], batch.edge_dst[:num_pairs]
        fixed, value = fixed_pair_axes(batch.wyckoff_ops, batch.anchor_idx, src, dst)  # symmetry layer
        w_sin, w_cos = self._fourier_blocks()
        dtype = w_sin.dtype
        sin_f, cos_f = fourier_features(value.to(torch.float64), F).to(dtype).chunk(2, dim=-1)
        mask = fixed.repeat_interleave(F, dim=1).to(dtype)  # [P, 3F], component-major like the features
        var_pairs = []
        for c in range(3):
            idx = torch.nonzero(~fixed[:, c]).squeeze(1)
            var_pairs.append(None if idx.numel() == num_pairs else idx)
        return FourierPlan(
            odd_const=(sin_f * mask) @ w_sin.t(),
            even_const=(cos_f * mask) @ w_cos.t(),
            var_pairs=tuple(var_pairs),
            w_sin=tuple(w_sin[:, c * F : (c + 1) * F].contiguous() for c in range(3)),
            w_cos=tuple(w_cos[:, c * F : (c + 1) * F].contiguous() for c in range(3)),
        )

    def _planned_products(self, plan: FourierPlan, diff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All layers' Fourier products [P, L·H] from the plan's fixed part and the varying entries."""
        odd, even = plan.odd_const.clone(), plan.even_const.clone()
        for c, idx in enumerate(plan.var_pairs):
            if idx is not None and idx.numel() == 0:
                continue
            d = diff[:, c] if idx is None else diff[idx, c]
            arg = fourier_args(d, self.config.num_freqs)
            dtype = plan.w_sin[c].dtype
            s = (arg.sin().to(dtype) @ plan.w_sin[c].t()).to(odd.dtype)
            co = (arg.cos().to(dtype) @ plan.w_cos[c].t()).to(even.dtype)
            if idx is None:
                odd += s
                even += co
            else:
                odd.index_add_(0, idx, s)
                even.index_add_(0, idx, co)
        return odd, even

    def forward(self, batch, k_t, frac_coords_t, t, atom_input, plan: FourierPlan | None = None) -> DenoiserOutput:
        """Args:
            batch: a :class:`~diffcsp_pp.data.batch.CrystalBatch` (graph structure only is read).
            k_t: [B, 6] noisy lattice coefficients.
            frac_coords_t: [N, 3] noisy fractional coordinates.
            t: [B] integer time steps 1..T.
            atom_input: [N] long Z (CSP) or [N, 100] noisy one-hot (generation).
            plan: :meth:`fourier_plan` of this batch (sampling), or None (everything computed).
        """
        batch_idx, src, dst = batch.batch_idx, batch.edge_src, batch.edge_dst
        dtype = self.node_init.weight.dtype
        if self.config.task == "csp":
            h = self.type_embed(atom_input - 1)
        else:
            h = self.type_embed(atom_input.to(dtype))
        temb = sinusoidal_time_embedding(t, self.config.time_dim).to(dtype)[batch_idx]
        h = self.node_init(torch.cat([h, temb], dim=-1))  # [N, H]
        num_pairs = (src.shape[0] - h.shape[0]) // 2
        with torch.no_grad():  # METHOD §5: the Fourier features carry no gradient
            diff = frac_coords_t[dst[:num_pairs]] - frac_coords_t[src[:num_pairs]]  # x_j - x_i, i < j
        k_in = k_t.to(dtype)
        inv_count = (1.0 / batch.num_atoms.to(dtype))[batch_idx][:, None]
        if plan is None:
            with torch.no_grad():
                sin_pairs, cos_pairs = fourier_features(diff, self.config.num_freqs).to(dtype).chunk(2, dim=-1)
            # the Fourier blocks of all layers in two matrix products (one per parity)
            w_sin, w_cos = self._fourier_blocks()
            odd_all, even_all = sin_pairs @ w_sin.t(), cos_pairs @ w_cos.t()
        else:
            if plan.odd_const.shape[0] != num_pairs:
                raise ValueError(f"the Fourier plan has {plan.odd_const.shape[0]} pairs, this batch {num_pairs}: "
                                 "build it with fourier_plan(batch) for this batch")
            odd_all, even_all = self._planned_products(plan, diff)
        odd_all, even_all = odd_all.split(self.config.hidden, dim=1), even_all.split(self.config.hidden, dim=1)
        for layer, odd, even in zip(self.layers, odd_all, even_all):
            h = layer(h, k_in, odd, even, src, dst, batch_idx, inv_count)
        h = self.final_norm(h)
        pooled = torch.zeros(batch.num_graphs, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, batch_idx, h)
        pooled = pooled / batch.num_atoms.to(h.dtype)[:, None]
        return DenoiserOutput(
            pred_eps_k=self.lattice_head(pooled),
            pred_score_x=self.coord_head(h),
            pred_eps_a=self.type_head(h) if self.type_head is not None else None,
        )
