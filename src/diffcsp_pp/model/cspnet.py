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
- when all crystals of a sampled batch have the same number of atoms n (Perov-5: 5), the plan also
  lays the edges out densely as [B, n, n] (:class:`DenseEdges`): the node terms reach the edges by
  broadcasting instead of gathers, the mean over j is a sum over one axis, and the fixed part of
  every layer's first edge pre-activation (fixed Fourier products and self-loops) is one stored
  table, to which each evaluation adds the node terms and the varying products (tested against
  the edge-list computation). An axis is recomputed there for all pairs or for none, so the shapes
  of an evaluation depend on the batch size only (``torch.compile`` then compiles once).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..symmetry.constants import NUM_ELEMENTS
from ..symmetry.wyckoff import fixed_pair_axes


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
    arg = fourier_args(diff, num_freqs).flatten(1)  # [E, 3F], component-major (E may be 0: one-atom crystals)
    return torch.cat([arg.sin(), arg.cos()], dim=-1)


@dataclass
class FourierPlan:
    """The Fourier products of one batch that do not change during sampling (see the module docstring).

    ``num_pairs``: P, the batch's unordered pairs; ``odd_const`` / ``even_const`` [P, L·H]: the sine /
    cosine products of all layers summed over the fixed (pair, axis) entries (None when ``dense``
    holds them); ``var_pairs[c]``: the pairs whose axis-c difference varies (None: all pairs);
    ``w_sin[c]`` / ``w_cos[c]`` [L·H, F]: the weight blocks of axis c; ``dense``: the tables of the
    dense layout, when every crystal of the batch has the same number of atoms (Perov-5), else None.
    Valid for the weights it was built with (the sampler builds it under ``no_grad`` with frozen weights).
    """

    num_pairs: int
    odd_const: torch.Tensor | None
    even_const: torch.Tensor | None
    var_pairs: tuple
    w_sin: tuple
    w_cos: tuple
    dense: DenseEdges | None = None


@dataclass
class DenseEdges:
    """Edge tables of a batch whose B crystals all have n atoms, in the layout [B, n, n] (crystal,
    i, j): there the gathers onto edges become broadcasts and the mean over j a sum over one axis.

    ``const`` [L, B·n·n, H]: the fixed part of each layer's first edge pre-activation (the Fourier
    products of the fixed (pair, axis) entries, ``+`` on edge (i, j), ``-`` on (j, i), the
    self-loop constant ``W_cos·1``); ``rows[c]``: the dense rows of the edges (i, j) and (j, i) of
    all pairs when axis c is recomputed, else None — in this layout an axis along which any pair
    varies is recomputed for all pairs, so an evaluation's shapes depend on the batch size only;
    ``w_fourier[l][c]``: layer l's sine and cosine blocks [F, H] of axis c; ``w_nodes[l]`` [H, 2H]:
    the h_i and h_j blocks of layer l; ``w_k`` [6, L·H] and ``bias`` [L·H]: the lattice blocks and
    biases of all layers.
    """

    n: int
    const: torch.Tensor
    rows: tuple
    w_fourier: tuple
    w_nodes: tuple
    w_k: torch.Tensor
    bias: torch.Tensor


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

    def node_weights(self) -> torch.Tensor:
        """The h_i and h_j blocks of the first edge layer as one [H, 2H] matrix (``hn @ it`` = [h_i part, h_j part])."""
        H = self.hidden
        return self.edge_in.weight[:, : 2 * H].reshape(H, 2, H).transpose(0, 1).reshape(2 * H, H).t()

    def message(self, pre: torch.Tensor) -> torch.Tensor:
        """Edge message from the first edge pre-activation: act(edge_out(act(pre)))."""
        return self.act(self.edge_out(self.act(pre)).to(pre.dtype))  # (under bf16 autocast: SiLU in fp32, faster on CPU)

    def update(self, h: torch.Tensor, hn: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        """Residual node update from the normalised features and the mean message."""
        return h + self.act(self.node_out(self.act(self.node_in(torch.cat([hn, agg], dim=-1)))))

    def forward(self, h, k, odd, even, edge_src, edge_dst, batch_idx, inv_count):
        """h [N, H], k [B, 6]; odd = sin·W_sinᵀ and even = cos·W_cosᵀ [P, H] on the pairs i < j;
        edges [E = 2P + N] in the layout of ``fully_connected_edges``; batch_idx [N];
        inv_count [N, 1] = 1 / atoms of i's crystal."""
        hn = self.norm(h)
        H = self.hidden
        w = self.edge_in.weight  # [H, 2H + 6 + 6F]
        node_src, node_dst = (hn @ self.node_weights()).split(H, 1)  # h_i and h_j blocks in one product
        node_src = node_src + (k @ w[:, 2 * H : 2 * H + 6].t() + self.edge_in.bias)[batch_idx]  # [N, H]
        w_cos_sum = self.fourier_weights(w.shape[1] - 2 * H - 6)[1].sum(1)  # cos(0) = 1 on self-loops
        pre = torch.cat([even + odd, even - odd, w_cos_sum.expand(h.shape[0], H)])  # [E, H]
        pre += node_src.index_select(0, edge_src)
        pre += node_dst.index_select(0, edge_dst)
        msg = self.message(pre)  # [E, H]
        agg = msg.new_zeros(h.shape).index_add_(0, edge_src, msg) * inv_count  # [N, H] mean over j
        return self.update(h, hn, agg)

    def forward_dense(self, h, w_nodes, kb, const, var_terms, n):
        """The same update on a batch of B crystals of n atoms each, edges in the dense layout
        (:class:`DenseEdges`): h [N = B·n, H]; w_nodes = :meth:`node_weights`; kb [B, H] = k·W_kᵀ + b;
        const [B·n·n, H] this layer's fixed edge part; var_terms: for each recomputed axis, (sine
        features of the P pairs [P, F], this layer's sine block [F, H], cosine features, cosine
        block, rows of the edges (i, j), rows of the edges (j, i)): the products added there
        (``+`` sine on (i, j), ``-`` sine on (j, i))."""
        B, H = kb.shape
        hn = self.norm(h)
        ab = (hn @ w_nodes).to(const.dtype)
        pre = const.view(B, n, n, H) + (ab[:, :H].view(B, n, H) + kb[:, None, :])[:, :, None, :]
        pre += ab[:, H:].view(B, 1, n, H)
        flat = pre.view(-1, H)
        for sin_f, w_sin, cos_f, w_cos, rows_ij, rows_ji in var_terms:
            odd, even = (sin_f @ w_sin).to(flat.dtype), (cos_f @ w_cos).to(flat.dtype)
            flat.index_add_(0, rows_ij, even).index_add_(0, rows_ij, odd)
            flat.index_add_(0, rows_ji, even).index_add_(0, rows_ji, odd, alpha=-1)
        agg = self.message(pre).sum(2).view(-1, H) * (1.0 / n)  # mean over j
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
        n = int(batch.num_atoms[0])
        uniform = bool((batch.num_atoms == n).all()) and bool(
            (batch.batch_idx == torch.arange(batch.num_graphs, device=src.device).repeat_interleave(n)).all())
        if uniform:
            # dense layout: an axis is recomputed for all pairs or for none, so the shapes of an
            # evaluation depend on the batch size only (compiled networks then need no new shapes)
            fixed = fixed & fixed.all(0, keepdim=True)
        w_sin, w_cos = self._fourier_blocks()
        dtype = w_sin.dtype
        sin_f, cos_f = fourier_features(value.to(torch.float64), F).to(dtype).chunk(2, dim=-1)
        mask = fixed.repeat_interleave(F, dim=1).to(dtype)  # [P, 3F], component-major like the features
        var_pairs = []
        for c in range(3):
            idx = torch.nonzero(~fixed[:, c]).squeeze(1)
            var_pairs.append(None if idx.numel() == num_pairs else idx)
        odd_const, even_const = (sin_f * mask) @ w_sin.t(), (cos_f * mask) @ w_cos.t()
        w_sin_c = tuple(w_sin[:, c * F : (c + 1) * F].contiguous() for c in range(3))
        w_cos_c = tuple(w_cos[:, c * F : (c + 1) * F].contiguous() for c in range(3))
        if not uniform:
            return FourierPlan(num_pairs, odd_const, even_const, tuple(var_pairs), w_sin_c, w_cos_c)
        dense = self._dense_edges(batch, n, src, dst, odd_const, even_const, var_pairs)
        return FourierPlan(num_pairs, None, None, tuple(var_pairs), w_sin_c, w_cos_c, dense)  # only the dense tables

    def _dense_edges(self, batch, n, src, dst, odd_const, even_const, var_pairs) -> DenseEdges:
        """The plan's edge tables in the dense layout (see :class:`DenseEdges`)."""
        H, L = self.config.hidden, self.config.num_layers
        N = batch.batch_idx.shape[0]
        # crystal b's atoms are b·n .. b·n + n - 1, so edge (i, j) sits at row i·n + (j mod n)
        pos_plus, pos_minus = src * n + dst % n, dst * n + src % n
        diag = torch.arange(N, device=src.device)
        const = odd_const.new_empty(N * n, L * H)
        const[pos_plus] = even_const + odd_const
        const[pos_minus] = even_const - odd_const
        const[diag * n + diag % n] = self._fourier_blocks()[1].reshape(L * H, -1).sum(1)  # cos(0) = 1 on self-loops
        F = self.config.num_freqs
        # an axis varies for all pairs (None) or for none (empty) here (see fourier_plan)
        rows = tuple((pos_plus, pos_minus) if idx is None else None for idx in var_pairs)
        blocks = [layer.fourier_weights(6 * F) for layer in self.layers]
        w = [layer.edge_in.weight for layer in self.layers]
        return DenseEdges(
            n=n,
            const=const.reshape(N * n, L, H).transpose(0, 1).contiguous(),  # [L, N·n, H]
            rows=rows,
            w_fourier=tuple(tuple((ws[:, c * F : (c + 1) * F].t().contiguous(), wc[:, c * F : (c + 1) * F].t().contiguous())
                                  for c in range(3)) for ws, wc in blocks),
            w_nodes=tuple(layer.node_weights().contiguous() for layer in self.layers),
            w_k=torch.cat([wl[:, 2 * H : 2 * H + 6] for wl in w]).t().contiguous(),
            bias=torch.cat([layer.edge_in.bias for layer in self.layers]),
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

    def _dense_layers(self, plan: FourierPlan, h, k_in, diff):
        """The message-passing layers on a uniform batch with its dense plan (same result as the edge list)."""
        dense, H = plan.dense, self.config.hidden
        feats = []  # per recomputed axis: sin and cos features [P, F] and the edge rows
        for c in range(3):
            if dense.rows[c] is not None:
                arg = fourier_args(diff[:, c], self.config.num_freqs)  # the axis varies for every pair
                feats.append((c, arg.sin().to(dense.const.dtype), arg.cos().to(dense.const.dtype), *dense.rows[c]))
        kb = torch.addmm(dense.bias, k_in, dense.w_k)  # [B, L·H]
        for l, layer in enumerate(self.layers):
            w_l = dense.w_fourier[l]
            terms = [(sin_f, w_l[c][0], cos_f, w_l[c][1], ij, ji) for c, sin_f, cos_f, ij, ji in feats]
            h = layer.forward_dense(h, dense.w_nodes[l], kb[:, l * H : (l + 1) * H], dense.const[l], terms, dense.n)
        return h

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
        if plan is not None and (plan.num_pairs != num_pairs
                                 or (plan.dense is not None and plan.dense.const.shape[1] != src.shape[0])):
            raise ValueError(f"the Fourier plan has {plan.num_pairs} pairs, this batch {num_pairs}: "
                             "build it with fourier_plan(batch) for this batch")
        if plan is not None and plan.dense is not None:
            h = self._dense_layers(plan, h, k_in, diff)
        else:
            if plan is None:
                with torch.no_grad():
                    sin_pairs, cos_pairs = fourier_features(diff, self.config.num_freqs).to(dtype).chunk(2, dim=-1)
                # the Fourier blocks of all layers in two matrix products (one per parity)
                w_sin, w_cos = self._fourier_blocks()
                odd_all, even_all = sin_pairs @ w_sin.t(), cos_pairs @ w_cos.t()
            else:
                odd_all, even_all = self._planned_products(plan, diff)
            odd_all, even_all = odd_all.split(self.config.hidden, dim=1), even_all.split(self.config.hidden, dim=1)
            inv_count = (1.0 / batch.num_atoms.to(dtype))[batch_idx][:, None]
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
