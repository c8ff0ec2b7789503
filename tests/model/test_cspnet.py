"""Denoiser: shapes, permutation equivariance, invariance to a global fractional translation; the
fast paths (model/fast.py) equal to the paper's layer (model/cspnet.py), on random and bundled weights."""

from __future__ import annotations

import pytest
import torch

from diffcsp_pp.data.batch import CrystalDataset, fully_connected_edges
from diffcsp_pp.model import CSPNet, ModelConfig
from diffcsp_pp.symmetry import analyze
from diffcsp_pp.model.cspnet import fourier_features
from tests.conftest import DATASET_FIXTURES, load_fixture_structures


@pytest.fixture(scope="module")
def dataset():
    infos = [analyze(s, 0.1, structure_id=m) for m, s in load_fixture_structures("mp_20_pilot_train.csv.gz")[:6]]
    return CrystalDataset(infos, dtype=torch.float64)


def _inputs(batch, task, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, N = batch.num_graphs, batch.frac_coords.shape[0]
    k = torch.randn(B, 6, generator=g, dtype=torch.float64)
    x = torch.rand(N, 3, generator=g, dtype=torch.float64)
    t = torch.randint(1, 1001, (B,), generator=g)
    # types: one draw per orbit, shared by its atoms (as training and sampling give them)
    a = batch.atom_types if task == "csp" else torch.randn(N, 100, generator=g, dtype=torch.float64)[batch.anchor_idx]
    return k, x, t, a


def test_edges_are_all_pairs_within_crystals():
    src, dst = fully_connected_edges(torch.tensor([2, 3]))
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert pairs == {(i, j) for i in range(2) for j in range(2)} | {(i, j) for i in range(2, 5) for j in range(2, 5)}
    assert len(src) == 4 + 9 and src[-5:].tolist() == dst[-5:].tolist() == list(range(5))


@pytest.mark.parametrize("task", ["csp", "gen"])
def test_shapes_permutation_equivariance_and_translation_invariance(dataset, task):
    torch.manual_seed(0)
    model = CSPNet(ModelConfig(hidden=32, num_layers=2, num_freqs=8, task=task)).double()
    batch = dataset.collate([0, 1, 2])
    k, x, t, a = _inputs(batch, task)
    out = model(batch, k, x, t, a)
    N = x.shape[0]
    assert out.pred_eps_k.shape == (3, 6) and out.pred_score_x.shape == (N, 3)
    assert (out.pred_eps_a is None) == (task == "csp")

    # a global fractional translation changes nothing
    shifted = model(batch, k, (x + torch.tensor([0.31, 0.77, 0.05], dtype=torch.float64)) % 1.0, t, a)
    torch.testing.assert_close(shifted.pred_score_x, out.pred_score_x)
    torch.testing.assert_close(shifted.pred_eps_k, out.pred_eps_k)

    # permuting the atoms within each crystal permutes the per-atom outputs
    perm = torch.cat([torch.randperm(int(n), generator=torch.Generator().manual_seed(1)) + int(o)
                      for n, o in zip(batch.num_atoms, torch.cumsum(batch.num_atoms, 0) - batch.num_atoms)])
    batch_p = dataset.collate([0, 1, 2])
    batch_p.batch_idx = batch.batch_idx[perm]
    out_p = model(batch_p, k, x[perm], t, a[perm])
    torch.testing.assert_close(out_p.pred_score_x, out.pred_score_x[perm])
    torch.testing.assert_close(out_p.pred_eps_k, out.pred_eps_k)
    if task == "gen":
        torch.testing.assert_close(out_p.pred_eps_a, out.pred_eps_a[perm])

    # crystals do not talk to each other: a crystal's outputs do not depend on its batch mates
    alone = model(dataset.collate([1]), k[1:2], x[batch.batch_idx == 1], t[1:2], a[batch.batch_idx == 1])
    torch.testing.assert_close(alone.pred_score_x, out.pred_score_x[batch.batch_idx == 1])


def test_paper_parameter_counts():
    assert sum(p.numel() for p in CSPNet(ModelConfig(task="csp")).parameters()) == 12_283_904
    assert sum(p.numel() for p in CSPNet(ModelConfig(task="gen")).parameters()) == 12_335_716


def test_bad_config():
    with pytest.raises(ValueError, match="task"):
        ModelConfig(task="xyz")
    with pytest.raises(ValueError, match="hidden"):
        ModelConfig(hidden=0)


def test_fast_layer_equals_the_papers_layer(dataset):
    """Brute force: concatenate [h_i, h_j, k, ψ(x_j - x_i)] for every ordered pair and apply the
    Linear layers as written in METHOD §5; the reference layer and the fast pair layer must give
    the same node update."""
    from diffcsp_pp.model.fast import pair_layer

    torch.manual_seed(0)
    model = CSPNet(ModelConfig(hidden=24, num_layers=1, num_freqs=5)).double()
    layer = model.layers[0]
    batch = dataset.collate([0, 2, 3])
    N = batch.frac_coords.shape[0]
    g = torch.Generator().manual_seed(2)
    h = torch.randn(N, 24, generator=g, dtype=torch.float64)
    k = torch.randn(batch.num_graphs, 6, generator=g, dtype=torch.float64)
    x = torch.rand(N, 3, generator=g, dtype=torch.float64)

    hn = layer.norm(h)
    expected = torch.empty_like(h)
    for i in range(N):
        b = int(batch.batch_idx[i])
        js = torch.nonzero(batch.batch_idx == b).flatten()
        feats = torch.cat([hn[i].expand(len(js), -1), hn[js], k[b].expand(len(js), -1),
                           fourier_features(x[js] - x[i], 5)], dim=-1)
        msg = layer.act(layer.edge_out(layer.act(layer.edge_in(feats)))).mean(0)
        expected[i] = h[i] + layer.act(layer.node_out(layer.act(layer.node_in(torch.cat([hn[i], msg])))))

    src, dst = batch.edge_src, batch.edge_dst
    inv = (1.0 / batch.num_atoms.double())[batch.batch_idx][:, None]
    reference = layer(h, k[batch.batch_idx[src]], fourier_features(x[dst] - x[src], 5), src, dst, inv)
    torch.testing.assert_close(reference, expected)

    num_pairs = (src.shape[0] - N) // 2
    diff = x[dst[:num_pairs]] - x[src[:num_pairs]]
    sin_p, cos_p = fourier_features(diff, 5).chunk(2, dim=-1)
    blocks = layer.edge_blocks()
    none = h.new_zeros(0, 24)  # no half-translation edges in the full layout
    got = pair_layer(layer, h, k, sin_p @ blocks.sin.t(), cos_p @ blocks.cos.t(), none, src, dst, batch.batch_idx, inv)
    torch.testing.assert_close(got, expected)


def test_edge_blocks_are_the_columns_of_w1():
    """W1 applied to [h_i, h_j, k, ψ] is the sum of its named blocks applied to each part."""
    torch.manual_seed(0)
    layer = CSPNet(ModelConfig(hidden=8, num_layers=1, num_freqs=3)).double().layers[0]
    g = torch.Generator().manual_seed(0)
    hi, hj = torch.randn(4, 8, generator=g, dtype=torch.float64), torch.randn(4, 8, generator=g, dtype=torch.float64)
    k, psi = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 18, generator=g, dtype=torch.float64)
    b = layer.edge_blocks()
    assert b.sin.shape == b.cos.shape == (8, 9) and b.lattice.shape == (8, 6)
    expected = layer.edge_in(torch.cat([hi, hj, k, psi], dim=-1))
    parts = hi @ b.h_i.t() + hj @ b.h_j.t() + k @ b.lattice.t() + psi[:, :9] @ b.sin.t() + psi[:, 9:] @ b.cos.t() + b.bias
    torch.testing.assert_close(parts, expected)


def _assert_outputs_close(got, expected, task, **tol):
    torch.testing.assert_close(got.pred_score_x, expected.pred_score_x, **tol)
    torch.testing.assert_close(got.pred_eps_k, expected.pred_eps_k, **tol)
    if task == "gen":
        torch.testing.assert_close(got.pred_eps_a, expected.pred_eps_a, **tol)


@pytest.mark.parametrize("task", ["csp", "gen"])
def test_fast_forward_equals_the_reference(dataset, task):
    """CSPNet.forward (pair products, no plan; and with the edge-list plan) gives the outputs of
    CSPNet.reference, the paper's layers run on every ordered edge; gradients too (training)."""
    torch.manual_seed(0)
    model = CSPNet(ModelConfig(hidden=32, num_layers=3, num_freqs=8, task=task)).double()
    batch = dataset.collate(list(range(len(dataset))))
    k, _, t, a = _inputs(batch, task)
    x = _symmetric_coords(batch, 4)
    from diffcsp_pp.model.fast import edge_layout

    assert edge_layout(batch, x, a).rows.shape[0] < x.shape[0]  # the fixture's centred cells are reduced
    reference = model.reference(batch, k, x, t, a)
    _assert_outputs_close(model(batch, k, x, t, a), reference, task)
    _assert_outputs_close(model(batch, k, x, t, a, plan=model.fourier_plan(batch)), reference, task)

    def loss(out):
        return out.pred_score_x.square().sum() + out.pred_eps_k.square().sum() + (
            0 if out.pred_eps_a is None else out.pred_eps_a.square().sum())

    loss(model(batch, k, x, t, a)).backward()
    fast_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    loss(model.reference(batch, k, x, t, a)).backward()
    for fast_grad, p in zip(fast_grads, model.parameters(), strict=True):
        torch.testing.assert_close(fast_grad, p.grad)


#: bundled model -> (fixture of its dataset, crystal size of a dense (uniform) batch)
BUNDLED = {"perov5-csp": ("perov_5_test.csv.gz", 5), "perov5-csp-small": ("perov_5_test.csv.gz", 5),
           "mp20-csp": ("mp_20_pilot_train.csv.gz", 6), "mp20-gen": ("mp_20_pilot_train.csv.gz", 6)}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_weights_fast_paths_equal_the_reference(name):
    """The bundled safetensors load unchanged into the one network; its fast paths (no plan; the
    edge-list plan on a mixed batch; the dense plan on same-size crystals) give the reference
    layers' outputs: in float64 to rounding (1e-10), in fp32 — as they ship and sample — to 1e-4 on
    outputs of size ~1-4 (measured 2026-12-07: at most 3e-6 without the plan, 7e-5 with it, on
    perov5-csp-small's dense plan; float summation order)."""
    from diffcsp_pp.folder import ModelFolder

    model, cfg = ModelFolder.resolve(name).load()
    assert model.node_init.weight.dtype == torch.float32
    task = cfg.model.task
    fixture, n = BUNDLED[name]
    own = [analyze(s, DATASET_FIXTURES[fixture], structure_id=m) for m, s in load_fixture_structures(fixture)]
    from diffcsp_pp.symmetry.wyckoff import centering_translations

    # the dense layout is for same-size crystals without centring (a centred cell takes the reduced edge list)
    same = [i for i in own if i.num_atoms == n and len(centering_translations(i.space_group)) == 1][:8]
    mixed = own[:4] + [analyze(s, 0.1, structure_id=m) for m, s in load_fixture_structures("mp_20_pilot_train.csv.gz")[:8]]
    assert len(same) >= 2 and len({i.num_atoms for i in mixed}) > 1
    for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-10)):
        model = model.to(dtype)
        for group, dense in ((mixed, False), (same, True)):
            batch = CrystalDataset(group, dtype=dtype).collate(list(range(len(group))))
            k, _, t, a = _inputs(batch, task)
            k, a = k.to(dtype), (a if task == "csp" else a.to(dtype))
            x = _symmetric_coords(CrystalDataset(group, dtype=torch.float64).collate(list(range(len(group)))), 7).to(dtype)
            with torch.no_grad():
                reference = model.reference(batch, k, x, t, a)
                _assert_outputs_close(model(batch, k, x, t, a), reference, task, atol=tol, rtol=tol)
                plan = model.fourier_plan(batch)
                assert (plan.dense is not None) == dense
                _assert_outputs_close(model(batch, k, x, t, a, plan=plan), reference, task, atol=tol, rtol=tol)


def _symmetric_coords(batch, seed):
    """A random Wyckoff-consistent configuration: every atom regenerated from its orbit anchor."""
    from diffcsp_pp.symmetry.wyckoff import expand_orbits

    g = torch.Generator().manual_seed(seed)
    free = torch.rand(batch.frac_coords.shape, generator=g, dtype=torch.float64)
    return expand_orbits(free, batch.wyckoff_ops, batch.anchor_idx)


def test_fixed_pair_axes_against_random_configurations(dataset):
    """Independent check: an axis the plan calls fixed has the same x_j - x_i (mod 1) in every random
    symmetric configuration, equal to its stated value; an axis it calls varying changes."""
    from diffcsp_pp.symmetry.wyckoff import fixed_pair_axes, wrap_diff

    batch = dataset.collate(list(range(len(dataset))))
    P = (batch.edge_src.shape[0] - batch.frac_coords.shape[0]) // 2
    src, dst = batch.edge_src[:P], batch.edge_dst[:P]
    fixed, value = fixed_pair_axes(batch.wyckoff_ops, batch.anchor_idx, src, dst)
    diffs = []
    for seed in range(4):
        x = _symmetric_coords(batch, seed)
        diffs.append(wrap_diff(x[dst], x[src]))
    # largest change (mod 1) of each pair axis between the first configuration and the others
    spread = torch.stack([wrap_diff(d, diffs[0]).abs() for d in diffs[1:]]).amax(0)  # [P, 3]
    assert fixed.any() and (~fixed).any()  # the fixture has both kinds
    assert spread[fixed].max() < 1e-9
    assert spread[~fixed].min() > 1e-4
    assert wrap_diff(value, diffs[0])[fixed].abs().max() < 1e-9
    # the numpy backend gives the same answer
    fixed_np, value_np = fixed_pair_axes(batch.wyckoff_ops.numpy(), batch.anchor_idx.numpy(), src.numpy(), dst.numpy())
    assert (fixed_np == fixed.numpy()).all() and abs(value_np - value.numpy()).max() == 0


def _assert_plan_gives_the_full_outputs(model, batch, plan, task, first_seed):
    """The network with ``plan`` equals the network without one on three symmetric configurations."""
    for seed in range(3):
        k, _, t, a = _inputs(batch, task, seed)
        x = _symmetric_coords(batch, first_seed + seed)
        full = model(batch, k, x, t, a)
        planned = model(batch, k, x, t, a, plan=plan)
        torch.testing.assert_close(planned.pred_score_x, full.pred_score_x)
        torch.testing.assert_close(planned.pred_eps_k, full.pred_eps_k)
        if task == "gen":
            torch.testing.assert_close(planned.pred_eps_a, full.pred_eps_a)


@pytest.mark.parametrize("task", ["csp", "gen"])
def test_fourier_plan_gives_the_full_products(dataset, task):
    """With the plan (fixed Fourier products computed once) the network gives the same outputs as
    without, for several symmetric configurations of the same batch."""
    torch.manual_seed(0)
    model = CSPNet(ModelConfig(hidden=32, num_layers=3, num_freqs=8, task=task)).double()
    batch = dataset.collate(list(range(len(dataset))))
    plan = model.fourier_plan(batch)
    assert plan.dense is None  # crystals of different sizes: the edge-list layout
    _assert_plan_gives_the_full_outputs(model, batch, plan, task, first_seed=10)


def _same_size_dataset(name, num_atoms, centred=False):
    from diffcsp_pp.symmetry.wyckoff import centering_translations

    infos = [analyze(s, 0.1, structure_id=m) for m, s in load_fixture_structures(name)]
    return CrystalDataset([i for i in infos if i.num_atoms == num_atoms
                           and (len(centering_translations(i.space_group)) > 1) == centred], dtype=torch.float64)


@pytest.mark.parametrize("task", ["csp", "gen"])
@pytest.mark.parametrize(("fixture", "num_atoms"), [("perov_5_test.csv.gz", 5), ("mp_20_pilot_train.csv.gz", 6), ("mp_20_pilot_train.csv.gz", 20)])
def test_dense_plan_gives_the_full_products(fixture, num_atoms, task):
    """Crystals of one size without centring get the dense edge layout (broadcasts instead of
    gathers); the outputs are those of the edge-list computation without a plan. Same-size centred
    crystals take the reduced edge list instead."""
    dataset = _same_size_dataset(fixture, num_atoms)
    assert len(dataset) >= 3
    torch.manual_seed(0)
    model = CSPNet(ModelConfig(hidden=32, num_layers=3, num_freqs=8, task=task)).double()
    batch = dataset.collate(list(range(len(dataset))))
    plan = model.fourier_plan(batch)
    assert plan.dense is not None and plan.dense.n == num_atoms
    assert any(rows is not None for rows in plan.dense.rows)  # something varies: the varying rows are exercised
    _assert_plan_gives_the_full_outputs(model, batch, plan, task, first_seed=20)
    if fixture.startswith("mp_20"):
        centred = _same_size_dataset(fixture, 8, centred=True)
        batch = centred.collate(list(range(len(centred))))
        plan = model.fourier_plan(batch)
        assert plan.dense is None and batch.node_rep.shape[0] < batch.frac_coords.shape[0]
        _assert_plan_gives_the_full_outputs(model, batch, plan, task, first_seed=30)


def test_fourier_plan_on_cubic_perovskite_has_nothing_to_recompute():
    """Pm-3m SrTiO3 (1a, 1b, 3c): no free coordinates, so every pair axis is fixed."""
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    batch = CrystalDataset([analyze(s, 0.01)], dtype=torch.float64).collate([0])
    model = CSPNet(ModelConfig(hidden=16, num_layers=1, num_freqs=4)).double()
    plan = model.fourier_plan(batch)
    assert all(idx is not None and idx.numel() == 0 for idx in plan.var_pairs)
    assert plan.dense is not None and all(rows is None for rows in plan.dense.rows)
    k, x, t, a = _inputs(batch, "csp")
    x = _symmetric_coords(batch, 3)
    torch.testing.assert_close(model(batch, k, x, t, a, plan=plan).pred_score_x, model(batch, k, x, t, a).pred_score_x)


def test_fourier_plan_of_another_batch_is_refused(dataset):
    model = CSPNet(ModelConfig(hidden=16, num_layers=1, num_freqs=4)).double()
    plan = model.fourier_plan(dataset.collate([0, 1]))
    batch = dataset.collate([0, 1, 2])
    k, x, t, a = _inputs(batch, "csp")
    with pytest.raises(ValueError, match="Fourier plan"):
        model(batch, k, x, t, a, plan=plan)


def test_reduced_edges_layout(dataset):
    """The reduced layout (data/batch.py): without centring it is the full edge list; with centring
    every row (one atom per class of translated atoms) sees every atom of its crystal once, a pair's
    partner edge has the opposite difference x_j - x_i, a half-translation edge its own opposite,
    and the rows' classes are the atoms an independent check (positions in random symmetric
    configurations) finds translated onto each other."""
    from diffcsp_pp.symmetry.wyckoff import wrap_diff

    primitive = [i for i in range(len(dataset)) if dataset.space_group[i] in (7, 191, 2, 10)]
    batch = dataset.collate(primitive)
    src, dst = fully_connected_edges(batch.num_atoms)
    assert torch.equal(batch.red_src, src) and torch.equal(batch.red_dst, dst) and batch.red_half == 0
    assert torch.equal(batch.node_rep, torch.arange(batch.frac_coords.shape[0]))

    batch = dataset.collate(list(range(len(dataset))))
    N, R = batch.frac_coords.shape[0], batch.node_rep.shape[0]
    P, Q = batch.red_pairs, batch.red_half
    assert R < N and batch.red_src.shape[0] == 2 * P + Q + R
    assert torch.equal(batch.node_rep[batch.node_of][batch.node_rep], batch.node_rep)
    rows = batch.node_of[batch.red_src]
    seen = set(zip(rows.tolist(), batch.red_dst.tolist()))
    assert len(seen) == batch.red_src.shape[0]  # no edge twice
    assert seen == {(r, j) for r, i in enumerate(batch.node_rep.tolist()) for j in range(N)
                    if batch.batch_idx[j] == batch.batch_idx[i]}
    assert torch.equal(batch.red_src[2 * P + Q:], batch.red_dst[2 * P + Q:])  # self-loops last, one per row
    for seed in range(3):
        x = _symmetric_coords(batch, 20 + seed)
        d = wrap_diff(x[batch.red_dst], x[batch.red_src])
        assert wrap_diff(d[:P], -d[P:2 * P]).abs().max() < 1e-9
        assert wrap_diff(d[2 * P:2 * P + Q], -d[2 * P:2 * P + Q]).abs().max() < 1e-9
        # atoms in one class differ by a constant translation in every configuration
        same = wrap_diff(x, x[batch.node_rep[batch.node_of]])
        if seed == 0:
            first = same
        assert wrap_diff(same, first).abs().max() < 1e-9
    # and the classes are as large as the independent check allows: two atoms whose difference is
    # the same in all configurations and moves the whole crystal onto itself are in one class
    sizes = torch.bincount(batch.node_of, minlength=R)
    for b in range(batch.num_graphs):
        atoms = torch.nonzero(batch.batch_idx == b).flatten()
        classes = sizes[batch.node_of[atoms]]
        from diffcsp_pp.symmetry.wyckoff import centering_translations
        assert (classes == len(centering_translations(int(batch.space_group[b])))).all()


@pytest.mark.parametrize("task", ["csp", "gen"])
def test_asymmetric_coordinates_use_every_edge(dataset, task):
    """Coordinates that a centring translation does not map onto themselves (not what training or
    sampling produce) are computed on the full edge list, still equal to the reference."""
    from diffcsp_pp.model.fast import edge_layout

    torch.manual_seed(0)
    model = CSPNet(ModelConfig(hidden=16, num_layers=2, num_freqs=4, task=task)).double()
    batch = dataset.collate(list(range(len(dataset))))
    k, x, t, a = _inputs(batch, task)
    assert edge_layout(batch, x, a).rows is None
    _assert_outputs_close(model(batch, k, x, t, a), model.reference(batch, k, x, t, a), task)
    x_sym = _symmetric_coords(batch, 0)
    x_sym[0] = (x_sym[0] + 1e-3) % 1.0  # one atom moved: no longer symmetric
    assert edge_layout(batch, x_sym, a).rows is None
    _assert_outputs_close(model(batch, k, x_sym, t, a), model.reference(batch, k, x_sym, t, a), task)
    if task == "gen":  # symmetric coordinates, types not shared by the orbits
        x_sym = _symmetric_coords(batch, 0)
        assert edge_layout(batch, x_sym, a).rows is not None
        a = torch.randn(a.shape, generator=torch.Generator().manual_seed(5), dtype=a.dtype)
        assert edge_layout(batch, x_sym, a).rows is None
        _assert_outputs_close(model(batch, k, x_sym, t, a), model.reference(batch, k, x_sym, t, a), task)
