"""The fast paths of CSPNet: the outputs of the paper's layer (:class:`~diffcsp_pp.model.cspnet.CSPLayer`,
:meth:`~diffcsp_pp.model.cspnet.CSPNet.reference`) with less work, from the same weights (read
through the layer's named blocks, :meth:`~diffcsp_pp.model.cspnet.CSPLayer.edge_blocks`).
Tested equal to the reference (tests/model/test_cspnet.py, on random and on the bundled weights).

- W1's node and lattice blocks are applied once per atom / crystal and gathered onto edges, so
  only the Fourier block is a per-edge matrix product;
- ψ's sine half is odd and its cosine half even in ``x_j - x_i``: with ``S = sin·W_sin`` and
  ``C = cos·W_cos`` on the unordered pairs i < j, edge (i, j) gets ``C + S``, edge (j, i) gets
  ``C - S`` and a self-loop the constant ``W_cos·1``, which halves the dominant matrix products;
- the Fourier features are computed once per forward pass, not once per layer;
- in sampling, a :class:`FourierPlan` built once per batch (:func:`fourier_plan`) holds the
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

- a centred cell (I, C, R, F) is mapped onto itself by its centring translations at every step
  (the coordinates are always orbit-expanded), and a translation changes no difference
  ``x_j - x_i``: translated atoms have the same features in every layer, so the layers compute one
  row per class of translated atoms and only that row's edges, 1/c of the n² (c = 2, 3, 4), with
  the odd/even trick kept (:class:`~diffcsp_pp.data.batch.ReducedEdges`). The outputs of the other
  atoms are copies; the result equals the full computation up to float rounding (tested against
  the reference on centred crystals, gradients included).

The edge list is ``batch.red_src`` / ``batch.red_dst`` (:func:`~diffcsp_pp.data.batch.reduced_edges`):
the P pairs, their partners, the Q edges to half-translated images, then one self-loop per row;
without centring it is :func:`~diffcsp_pp.data.batch.fully_connected_edges` (pairs i < j, the same
reversed, self-loops).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..symmetry.wyckoff import fixed_pair_axes
from .features import fourier_args, fourier_features


@dataclass
class FourierPlan:
    """The Fourier products of one batch that do not change during sampling (see the module docstring).

    ``num_pairs``: P, the batch's unordered pairs; ``odd_const`` / ``even_const`` [P, L·H]: the sine /
    cosine products of all layers summed over the fixed (pair, axis) entries (None when ``dense``
    holds them); ``var_pairs[c]``: the pairs whose axis-c difference varies (None: all pairs);
    ``w_sin[c]`` / ``w_cos[c]`` [L·H, F]: the weight blocks of axis c; ``dense``: the tables of the
    dense layout, when every crystal of the batch has the same number of atoms and no centring
    translation (Perov-5), else None; ``half_const`` [Q, L·H]: the cosine products of the edges to
    a half-translated image (constant differences; see ``reduced_edges``).
    Valid for the weights it was built with (the sampler builds it under ``no_grad`` with frozen weights).
    """

    num_pairs: int
    odd_const: torch.Tensor | None
    even_const: torch.Tensor | None
    var_pairs: tuple
    w_sin: tuple
    w_cos: tuple
    dense: DenseEdges | None = None
    half_const: torch.Tensor | None = None


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


def node_weights(layer) -> torch.Tensor:
    """W1's h_i and h_j blocks as one [H, 2H] matrix: ``hn @ it`` = [h_i part, h_j part]."""
    blocks = layer.edge_blocks()
    return torch.cat([blocks.h_i, blocks.h_j]).t()


def stacked_fourier_blocks(net) -> tuple[torch.Tensor, torch.Tensor]:
    """W1's sine and cosine blocks of all layers, stacked: two [L·H, 3F] matrices."""
    blocks = [layer.edge_blocks() for layer in net.layers]
    return torch.cat([b.sin for b in blocks]), torch.cat([b.cos for b in blocks])


def pair_layer(layer, h, k, odd, even, half, src, dst, batch_idx, inv_count):
    """One layer's update from the Fourier products on the unordered pairs: h [R, H] (one row per
    class of translated atoms, :class:`~diffcsp_pp.data.batch.ReducedEdges`), k [B, 6];
    odd = sin·W_sinᵀ and even = cos·W_cosᵀ [P, H] on the pairs; half = cos·W_cosᵀ [Q, H] on the
    edges to a half-translated image of the same atom; edges (rows src, dst [E_r = 2P + Q + R]) in
    the layout of ``reduced_edges``; batch_idx [R]; inv_count [R, 1] = 1 / atoms of the row's crystal."""
    hn = layer.norm(h)
    H = layer.hidden
    blocks = layer.edge_blocks()
    node_src, node_dst = (hn @ node_weights(layer)).split(H, 1)  # h_i and h_j blocks in one product
    node_src = node_src + (k @ blocks.lattice.t() + blocks.bias)[batch_idx]  # [R, H]
    w_cos_sum = blocks.cos.sum(1)  # cos(0) = 1 on self-loops
    pre = torch.cat([even + odd, even - odd, half, w_cos_sum.expand(h.shape[0], H)])  # [E_r, H]
    pre += node_src.index_select(0, src)
    pre += node_dst.index_select(0, dst)
    msg = layer.message(pre)  # [E_r, H]
    agg = msg.new_zeros(h.shape).index_add_(0, src, msg) * inv_count  # [R, H] mean over the crystal's atoms j
    return layer.update(h, hn, agg)


def dense_layer(layer, h, w_nodes, kb, const, var_terms, n):
    """The same update on a batch of B crystals of n atoms each, edges in the dense layout
    (:class:`DenseEdges`): h [N = B·n, H]; w_nodes = :func:`node_weights`; kb [B, H] = k·W_kᵀ + b;
    const [B·n·n, H] this layer's fixed edge part; var_terms: for each recomputed axis, (sine
    features of the P pairs [P, F], this layer's sine block [F, H], cosine features, cosine
    block, rows of the edges (i, j), rows of the edges (j, i)): the products added there
    (``+`` sine on (i, j), ``-`` sine on (j, i))."""
    B, H = kb.shape
    hn = layer.norm(h)
    ab = (hn @ w_nodes).to(const.dtype)
    pre = const.view(B, n, n, H) + (ab[:, :H].view(B, n, H) + kb[:, None, :])[:, :, None, :]
    pre += ab[:, H:].view(B, 1, n, H)
    flat = pre.view(-1, H)
    for sin_f, w_sin, cos_f, w_cos, rows_ij, rows_ji in var_terms:
        odd, even = (sin_f @ w_sin).to(flat.dtype), (cos_f @ w_cos).to(flat.dtype)
        flat.index_add_(0, rows_ij, even).index_add_(0, rows_ij, odd)
        flat.index_add_(0, rows_ji, even).index_add_(0, rows_ji, odd, alpha=-1)
    agg = layer.message(pre).sum(2).view(-1, H) * (1.0 / n)  # mean over j
    return layer.update(h, hn, agg)


@torch.no_grad()
def fourier_plan(net, batch) -> FourierPlan:
    """The fixed part of the Fourier products of ``batch`` for the network ``net`` (see :class:`FourierPlan`)."""
    F = net.config.num_freqs
    num_pairs, num_half = batch.red_pairs, batch.red_half
    src, dst = batch.red_src[:num_pairs], batch.red_dst[:num_pairs]
    fixed, value = fixed_pair_axes(batch.wyckoff_ops, batch.anchor_idx, src, dst)  # symmetry layer
    n = int(batch.num_atoms[0])
    uniform = batch.node_rep.shape[0] == batch.batch_idx.shape[0] and bool((batch.num_atoms == n).all()) and bool(
        (batch.batch_idx == torch.arange(batch.num_graphs, device=src.device).repeat_interleave(n)).all())
    if uniform:
        # dense layout: an axis is recomputed for all pairs or for none, so the shapes of an
        # evaluation depend on the batch size only (compiled networks then need no new shapes)
        fixed = fixed & fixed.all(0, keepdim=True)
    w_sin, w_cos = stacked_fourier_blocks(net)
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
    half = slice(2 * num_pairs, 2 * num_pairs + num_half)
    half_fixed, half_value = fixed_pair_axes(batch.wyckoff_ops, batch.anchor_idx, batch.red_src[half], batch.red_dst[half])
    half_const = None
    if bool(half_fixed.all()):  # one orbit, equal linear parts: always (the difference is the translation)
        half_const = fourier_features(half_value.to(torch.float64), F).to(dtype).chunk(2, dim=-1)[1] @ w_cos.t()
    if not uniform:
        return FourierPlan(num_pairs, odd_const, even_const, tuple(var_pairs), w_sin_c, w_cos_c, half_const=half_const)
    dense = _dense_edges(net, batch, n, src, dst, odd_const, even_const, var_pairs)
    return FourierPlan(num_pairs, None, None, tuple(var_pairs), w_sin_c, w_cos_c, dense)  # only the dense tables


def _dense_edges(net, batch, n, src, dst, odd_const, even_const, var_pairs) -> DenseEdges:
    """The plan's edge tables in the dense layout (see :class:`DenseEdges`)."""
    H, L, F = net.config.hidden, net.config.num_layers, net.config.num_freqs
    N = batch.batch_idx.shape[0]
    # crystal b's atoms are b·n .. b·n + n - 1, so edge (i, j) sits at row i·n + (j mod n)
    pos_plus, pos_minus = src * n + dst % n, dst * n + src % n
    diag = torch.arange(N, device=src.device)
    const = odd_const.new_empty(N * n, L * H)
    const[pos_plus] = even_const + odd_const
    const[pos_minus] = even_const - odd_const
    const[diag * n + diag % n] = stacked_fourier_blocks(net)[1].reshape(L * H, -1).sum(1)  # cos(0) = 1 on self-loops
    # an axis varies for all pairs (None) or for none (empty) here (see fourier_plan)
    rows = tuple((pos_plus, pos_minus) if idx is None else None for idx in var_pairs)
    blocks = [layer.edge_blocks() for layer in net.layers]
    return DenseEdges(
        n=n,
        const=const.reshape(N * n, L, H).transpose(0, 1).contiguous(),  # [L, N·n, H]
        rows=rows,
        w_fourier=tuple(tuple((b.sin[:, c * F : (c + 1) * F].t().contiguous(), b.cos[:, c * F : (c + 1) * F].t().contiguous())
                              for c in range(3)) for b in blocks),
        w_nodes=tuple(node_weights(layer).contiguous() for layer in net.layers),
        w_k=torch.cat([b.lattice for b in blocks]).t().contiguous(),
        bias=torch.cat([b.bias for b in blocks]),
    )


def _planned_products(net, plan: FourierPlan, diff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All layers' Fourier products [P, L·H] from the plan's fixed part and the varying entries."""
    odd, even = plan.odd_const.clone(), plan.even_const.clone()
    for c, idx in enumerate(plan.var_pairs):
        if idx is not None and idx.numel() == 0:
            continue
        d = diff[:, c] if idx is None else diff[idx, c]
        arg = fourier_args(d, net.config.num_freqs)
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


def _dense_layers(net, plan: FourierPlan, h, k_in, diff):
    """The message-passing layers on a uniform batch with its dense plan (same result as the edge list)."""
    dense, H = plan.dense, net.config.hidden
    feats = []  # per recomputed axis: sin and cos features [P, F] and the edge rows
    for c in range(3):
        if dense.rows[c] is not None:
            arg = fourier_args(diff[:, c], net.config.num_freqs)  # the axis varies for every pair
            feats.append((c, arg.sin().to(dense.const.dtype), arg.cos().to(dense.const.dtype), *dense.rows[c]))
    kb = torch.addmm(dense.bias, k_in, dense.w_k)  # [B, L·H]
    for l, layer in enumerate(net.layers):
        w_l = dense.w_fourier[l]
        terms = [(sin_f, w_l[c][0], cos_f, w_l[c][1], ij, ji) for c, sin_f, cos_f, ij, ji in feats]
        h = dense_layer(layer, h, dense.w_nodes[l], kb[:, l * H : (l + 1) * H], dense.const[l], terms, dense.n)
    return h


@dataclass
class EdgeLayout:
    """The rows and edges one evaluation computes on: ``rows`` [R] the atoms with a row (None: every
    atom), ``row_of`` [N] each atom's row (None: itself), ``src`` / ``dst`` [E] the edges' atoms in
    the layout of :func:`~diffcsp_pp.data.batch.reduced_edges` (``pairs`` pairs, their partners,
    ``half`` half-translation edges, self-loops)."""

    rows: torch.Tensor | None
    row_of: torch.Tensor | None
    src: torch.Tensor
    dst: torch.Tensor
    pairs: int
    half: int


#: Largest wrapped difference (fractional) between an atom and its centring-translated class
#: representative for the coordinates to count as symmetric (float32 rounding is ~1e-7).
SYMMETRY_TOL = 1e-4


def edge_layout(batch, frac_coords_t: torch.Tensor, atom_input: torch.Tensor | None = None) -> EdgeLayout:
    """The reduced layout of ``batch`` (one row per class of translated atoms) when the coordinates
    are symmetric under its centring translations and the atom inputs equal within each class —
    always in training and sampling, where coordinates are orbit-expanded and types shared by an
    orbit — else every atom and every ordered edge (e.g. arbitrary coordinates)."""
    n = batch.batch_idx.shape[0]
    full = EdgeLayout(None, None, batch.edge_src, batch.edge_dst, (batch.edge_src.shape[0] - n) // 2, 0)
    if batch.node_rep is None:
        return full
    if batch.node_rep.shape[0] == n:  # no centring translation in the batch: the same edges
        return EdgeLayout(None, None, batch.red_src, batch.red_dst, batch.red_pairs, batch.red_half)
    with torch.no_grad():
        rep = batch.node_rep[batch.node_of]
        trans = batch.wyckoff_ops[:, :3, 3].to(frac_coords_t.dtype)
        gap = frac_coords_t - frac_coords_t[rep] - (trans - trans[rep])  # x_i - x_rep must be the translation
        gap = gap - torch.round(gap)
        if bool(gap.abs().max() > SYMMETRY_TOL):
            return full
        if atom_input is not None and not torch.equal(atom_input, atom_input[rep]):
            return full
    return EdgeLayout(batch.node_rep, batch.node_of, batch.red_src, batch.red_dst, batch.red_pairs, batch.red_half)


def fast_layers(net, batch, h, k_t, frac_coords_t, plan: FourierPlan | None, layout: EdgeLayout) -> torch.Tensor:
    """All message-passing layers of ``net`` from h⁰ on the rows of ``layout`` (:func:`edge_layout`;
    [R, H], one atom per class of translated atoms, or [N, H]): the h the reference layers give those atoms."""
    lay = layout
    src, dst, num_pairs, num_half = lay.src, lay.dst, lay.pairs, lay.half
    batch_idx = batch.batch_idx if lay.rows is None else batch.batch_idx[lay.rows]
    dtype = net.node_init.weight.dtype  # the weights' (under bf16 autocast h is bfloat16)
    with torch.no_grad():  # METHOD §5: the Fourier features carry no gradient
        diff = frac_coords_t[dst[:num_pairs]] - frac_coords_t[src[:num_pairs]]  # x_j - x_i on the pairs
    k_in = k_t.to(dtype)
    if plan is not None and (plan.num_pairs != num_pairs
                             or (plan.dense is not None and plan.dense.const.shape[1] != src.shape[0])):
        raise ValueError(f"the Fourier plan has {plan.num_pairs} pairs, this evaluation {num_pairs}: build it "
                         "with fourier_plan(batch) for this batch, and sample symmetric coordinates")
    if plan is not None and plan.dense is not None:
        return _dense_layers(net, plan, h, k_in, diff)
    if plan is None:
        w_sin, w_cos = stacked_fourier_blocks(net)
        with torch.no_grad():
            sin_pairs, cos_pairs = fourier_features(diff, net.config.num_freqs).to(dtype).chunk(2, dim=-1)
        # the Fourier blocks of all layers in two matrix products (one per parity)
        odd_all, even_all = sin_pairs @ w_sin.t(), cos_pairs @ w_cos.t()
    else:
        odd_all, even_all = _planned_products(net, plan, diff)
    if plan is not None and plan.half_const is not None:
        half_all = plan.half_const
    else:
        w_cos = stacked_fourier_blocks(net)[1]
        half = slice(2 * num_pairs, 2 * num_pairs + num_half)
        with torch.no_grad():
            cos_half = fourier_features(frac_coords_t[dst[half]] - frac_coords_t[src[half]],
                                        net.config.num_freqs).to(dtype).chunk(2, dim=-1)[1]
        half_all = cos_half @ w_cos.t()
    H = net.config.hidden
    odd_all, even_all, half_all = odd_all.split(H, dim=1), even_all.split(H, dim=1), half_all.split(H, dim=1)
    inv_count = (1.0 / batch.num_atoms.to(dtype))[batch_idx][:, None]
    src_row, dst_row = (src, dst) if lay.row_of is None else (lay.row_of[src], lay.row_of[dst])
    for layer, odd, even, half_l in zip(net.layers, odd_all, even_all, half_all):
        h = pair_layer(layer, h, k_in, odd, even, half_l, src_row, dst_row, batch_idx, inv_count)
    return h
