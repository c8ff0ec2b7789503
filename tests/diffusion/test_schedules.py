"""Schedules and the wrapped-normal helper against METHOD's measured values, autograd and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffcsp_pp.diffusion.schedules import DDPMSchedule, geometric_sigmas
from diffcsp_pp.diffusion.wrapped_normal import neg_wrapped_normal_score, score_normaliser


def test_cosine_schedule_values():
    s = DDPMSchedule.cosine()
    assert s.timesteps == 1000 and s.betas[0] == 0 and s.alpha_bars[0] == 1
    assert s.betas[1] == pytest.approx(1e-4)
    assert s.alpha_bars[100] == pytest.approx(0.97172, abs=2e-5)
    assert s.alpha_bars[500] == pytest.approx(0.49365, abs=2e-5)
    assert s.betas[999] == pytest.approx(0.75, abs=1e-3)
    assert s.betas[1000] == pytest.approx(0.9999)
    assert s.posterior_std[1] == 0


def test_sigma_schedule_values():
    sig = geometric_sigmas()
    assert sig[0] == 0 and sig[1] == pytest.approx(0.005) and sig[1000] == pytest.approx(0.5)
    assert sig[100] == pytest.approx(0.00789, abs=1e-5)
    assert sig[500] == pytest.approx(0.04989, abs=1e-5)


@pytest.mark.parametrize("sigma", [0.005, 0.05, 0.2, 0.5])
def test_g_is_minus_autograd_score(sigma):
    d = torch.linspace(-0.49, 0.97, 101, dtype=torch.float64, requires_grad=True)
    n = torch.arange(-10, 11, dtype=torch.float64)
    logp = torch.logsumexp(-((d[:, None] + n) ** 2) / (2 * sigma**2), dim=-1)
    (grad,) = torch.autograd.grad(logp.sum(), d)
    g = neg_wrapped_normal_score(d.detach(), sigma)
    torch.testing.assert_close(-grad, g, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(neg_wrapped_normal_score(d.detach().numpy(), sigma), g.numpy(), rtol=1e-12, atol=1e-9)


def test_g_is_periodic_odd_and_finite():
    d = np.linspace(-0.5, 0.5, 201)
    for sigma in (0.005, 0.1, 0.5):
        g = neg_wrapped_normal_score(d, sigma)
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(neg_wrapped_normal_score(d + 1.0, sigma), g, atol=1e-6 / sigma**2)
        np.testing.assert_allclose(neg_wrapped_normal_score(-d, sigma), -g, atol=1e-6 / sigma**2)
    sig = torch.tensor([[0.01], [0.3]], dtype=torch.float64)
    out = neg_wrapped_normal_score(torch.zeros(2, 3, dtype=torch.float64) + 0.1, sig)
    assert out.shape == (2, 3)


def test_normaliser_matches_monte_carlo_within_one_percent():
    sigmas = np.array([0.005, 0.02, 0.1, 0.3, 0.5])
    lam = score_normaliser(sigmas)
    rng = np.random.default_rng(0)
    for sigma, value in zip(sigmas, lam, strict=True):
        d = (sigma * rng.normal(size=400_000)) % 1.0
        mc = np.mean(neg_wrapped_normal_score(d, sigma) ** 2)
        assert value == pytest.approx(mc, rel=0.01), sigma
    assert lam[0] == pytest.approx(1 / 0.005**2, rel=1e-3)  # METHOD: 40,096 at σ=0.005 (MC)
    assert lam[-1] == pytest.approx(0.0041, rel=0.05)


def test_normaliser_quadrature_has_converged():
    """The default point count gives the value of a 16x finer rule (exponential convergence)."""
    from diffcsp_pp.diffusion.process import geometric_sigmas

    sigmas = geometric_sigmas(1000, 0.005, 0.5)
    np.testing.assert_allclose(score_normaliser(sigmas), score_normaliser(sigmas, num_points=4097), rtol=1e-12)
