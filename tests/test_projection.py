"""The emotion disguise's gradient combination (issue 15, item 2): PCGrad and GradVac against the sum."""

from __future__ import annotations

import math

import pytest
import torch

from faceprot.disguise import GradientProjector, project_conflicting, vaccinate


pytestmark = pytest.mark.usefixtures("faceprot_threads")


# The toy problem in the spirit of MAP's Figure 3 (and PCGrad's): the identity loss is a steep,
# narrow valley (curvature 20 across it, 2 along it) around (3, 0); the expression loss a gentle
# bowl around the origin. Both are losses to minimise. With a step of 0.09, 0.09 * 20 = 1.8: the
# naive sum bounces across the valley, and the steep identity loss outweighs the expression loss.
IDENTITY_CENTRE, EXPRESSION_CENTRE = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 0.0])
START, STEP, STEPS = (1.0, 2.0), 0.09, 100


def identity_loss(x):
    d = x - IDENTITY_CENTRE.to(x)
    return 0.5 * (20 * d[0] ** 2 + 2 * d[1] ** 2)


def expression_loss(x):
    d = x - EXPRESSION_CENTRE.to(x)
    return 0.5 * (d[0] ** 2 + d[1] ** 2)


def _grad(loss, x):
    x = x.clone().requires_grad_()
    return torch.autograd.grad(loss(x), x)[0]


def descend(mode: str) -> dict:
    """Fixed-step descent along the projector's direction; the measured path."""
    projector = GradientProjector(mode)
    x = torch.tensor(START, dtype=torch.float64)
    la, le, steps, fallbacks = [float(identity_loss(x))], [float(expression_loss(x))], [], 0
    for _ in range(STEPS):
        d, (rec,) = projector(_grad(identity_loss, x), _grad(expression_loss, x))
        x = x - STEP * d
        steps.append(-STEP * d)
        la.append(float(identity_loss(x)))
        le.append(float(expression_loss(x)))
        fallbacks += rec.fallback
    across = torch.stack(steps)[:, 0]  # the valley's steep direction
    return {"identity": (la[0], la[-1]), "expression": (le[0], le[-1]),
            "flips": int((across[1:] * across[:-1] < 0).sum()),
            "identity_rises": sum(b > a for a, b in zip(la, la[1:])), "fallbacks": fallbacks}


def test_toy_problem_projection_improves_both_where_the_sum_oscillates_and_gives_up_expression():
    runs = {m: descend(m) for m in ("sum", "pcgrad", "gradvac")}
    print({m: {k: (tuple(round(v, 3) for v in r[k]) if isinstance(r[k], tuple) else r[k]) for k in r}
           for m, r in runs.items()})
    s = runs["sum"]
    # The sum: the step across the valley changes sign nearly every time (oscillation), the identity
    # loss goes up on a third of the steps or more, and the expression loss ends higher than it began.
    assert s["flips"] >= 90 and s["identity_rises"] >= 30
    assert s["expression"][1] > 1.5 * s["expression"][0]
    for mode in ("pcgrad", "gradvac"):
        r = runs[mode]
        assert r["identity"][1] < 0.5 * r["identity"][0], mode  # both lower than at the start
        assert r["expression"][1] < 0.8 * r["expression"][0], mode
        assert r["flips"] <= 5 and r["identity_rises"] <= 5, mode
    assert runs["gradvac"]["fallbacks"] > 0  # the run does exercise GradVac's fallback


def _pairs(n: int = 400, seed: int = 0):
    """Seeded gradient pairs: random, conflicting, nearly parallel, nearly opposite, tiny, huge and
    of very different sizes, in 2 to 300 dimensions."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for k in range(n):
        dim = [2, 3, 17, 300][k % 4]
        a = torch.randn(dim, generator=gen, dtype=torch.float64)
        noise = torch.randn(dim, generator=gen, dtype=torch.float64)
        kind = k % 7
        if kind == 0:
            e = noise
        elif kind == 1:  # conflicting
            e = -0.7 * a + 0.5 * noise
        elif kind == 2:  # nearly parallel
            e = 3 * a + 1e-7 * noise
        elif kind == 3:  # nearly opposite
            e = -0.2 * a + 1e-9 * noise
        elif kind == 4:  # tiny
            a, e = a * 1e-30, (noise - a) * 1e-30
        elif kind == 5:  # huge
            a, e = a * 1e30, (noise - 2 * a) * 1e30
        else:  # very different sizes, conflicting
            a, e = a * 1e-6, (noise - 3 * a) * 1e6
        out.append((a, e))
    return out


def _gains(a, e, d):
    return float(a @ d), float(e @ d)


@pytest.mark.parametrize("mode,initial_target", [("pcgrad", 0.0), ("gradvac", 0.0), ("gradvac", 0.6),
                                                 ("gradvac", 0.95), ("gradvac", -0.6)])
def test_projection_never_raises_either_objective_to_first_order(mode, initial_target):
    projector = GradientProjector(mode, ema=0.05, initial_target=initial_target)
    conflicts = 0
    for a, e in _pairs():
        d, (rec,) = projector(a, e)
        # Rounding: d is a difference of terms as large as |a| + |e| (nearly opposite pairs cancel).
        scale = float(a.norm() + e.norm())
        tol_a, tol_e = 1e-12 * float(a.norm()) * scale, 1e-12 * float(e.norm()) * scale
        ga, ge = _gains(a, e, d)
        assert ga >= -tol_a and ge >= -tol_e, (mode, rec)
        assert math.isclose(ga, rec.gain_a, abs_tol=tol_a) and math.isclose(ge, rec.gain_e, abs_tol=tol_e)
        conflicts += rec.conflict
    assert conflicts > 150


def test_the_naive_sum_does_raise_an_objective_where_gradients_conflict():
    a, e = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([-10.0, 1.0], dtype=torch.float64)
    d, (rec,) = GradientProjector("sum")(a, e)
    assert rec.conflict and rec.gain_a == pytest.approx(-9.0)  # the identity loss rises
    # On the first-order test's pairs, the sum raises one of the two on many.
    raised = sum(min(r.gain_a, r.gain_e) < 0 for r in (GradientProjector("sum")(*p)[1][0] for p in _pairs()))
    assert raised > 50
    d, (rec,) = GradientProjector("pcgrad")(a, e)
    assert rec.gain_a >= 0 and rec.gain_e >= 0
    # PCGrad's projections by hand: each loses its component along the other.
    expect = (a - (a @ e) / (e @ e) * e) + (e - (a @ e) / (a @ a) * a)
    assert torch.allclose(d, expect)


def test_vaccinate_reaches_the_target_cosine_and_is_pcgrad_at_target_zero():
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        gi, gj = torch.randn(2, 9, generator=gen, dtype=torch.float64)
        phi = float(torch.nn.functional.cosine_similarity(gi, gj, dim=0))
        target = phi + (0.999 - phi) * float(torch.rand(1, generator=gen))
        adjusted = vaccinate(gi, gj, target)
        assert float(torch.nn.functional.cosine_similarity(adjusted, gj, dim=0)) == pytest.approx(target, abs=1e-9)
        if phi < 0:
            assert torch.allclose(vaccinate(gi, gj, 0.0), gi - (gi @ gj) / (gj @ gj) * gj)
            assert torch.allclose(vaccinate(gi, gj, 0.0) + vaccinate(gj, gi, 0.0), project_conflicting(gi, gj))


def test_gradvac_falls_back_to_pcgrad_exactly_where_its_direction_would_raise_an_objective():
    gen = torch.Generator().manual_seed(2)
    seen = {"fallback": 0, "adjusted_kept": 0, "sum_kept": 0, "sum_fallback": 0}
    for k in range(300):
        target = [0.9, 0.5, 0.2, -0.3, -0.8][k % 5]
        a = torch.randn(5, generator=gen, dtype=torch.float64)
        e = torch.randn(5, generator=gen, dtype=torch.float64) * 10 ** float(torch.empty(1).uniform_(-1.5, 1.5, generator=gen))
        projector = GradientProjector("gradvac", initial_target=target)
        d, (rec,) = projector(a, e)
        # The condition, checked directly on GradVac's own direction.
        phi = float(torch.nn.functional.cosine_similarity(a, e, dim=0))
        candidate = vaccinate(a, e, target) + vaccinate(e, a, target) if phi < target else a + e
        raises = float(a @ candidate) < 0 or float(e @ candidate) < 0
        assert rec.target == target and rec.adjusted == (phi < target) and rec.fallback == raises
        assert torch.allclose(d, project_conflicting(a, e) if raises else candidate, rtol=1e-12, atol=0)
        key = ("fallback" if rec.adjusted else "sum_fallback") if raises else ("adjusted_kept" if rec.adjusted else "sum_kept")
        seen[key] += 1
    assert min(seen.values()) >= 5, seen  # every branch was exercised


def _unit(deg):
    return torch.tensor([math.cos(math.radians(deg)), math.sin(math.radians(deg))], dtype=torch.float64)


def test_fallback_constructed_cases():
    """Where GradVac adjusts (phi = cos alpha < T = cos beta), its direction's gain on the identity
    loss works out to (|a| sin alpha / sin beta) (|a| cos(alpha - beta) + |e| T): with a high target
    it is negative once alpha - beta > 90 degrees and a is the larger gradient."""
    a, e = 10 * _unit(0), _unit(170)
    alpha, beta = math.radians(170), math.acos(0.9)
    candidate = vaccinate(a, e, 0.9) + vaccinate(e, a, 0.9)
    closed_form = 10 * math.sin(alpha) / math.sin(beta) * (10 * math.cos(alpha - beta) + 1 * 0.9)
    assert float(a @ candidate) == pytest.approx(closed_form) and closed_form < 0
    d, (rec,) = GradientProjector("gradvac", initial_target=0.9)(a, e)
    assert rec.adjusted and rec.fallback and torch.equal(d, project_conflicting(a, e))
    assert rec.gain_a >= 0 and rec.gain_e >= 0
    # The same pair at target 0 is PCGrad itself: nothing to fall back from.
    d, (rec,) = GradientProjector("gradvac", initial_target=0.0)(a, e)
    assert rec.adjusted and not rec.fallback and torch.allclose(d, project_conflicting(a, e))
    # A low target leaves a mild conflict alone, and the sum raises the small one's loss: fallback
    # without adjusting.
    a, e = _unit(0), 10 * _unit(100)
    assert float(a @ (a + e)) < 0
    d, (rec,) = GradientProjector("gradvac", initial_target=-0.9)(a, e)
    assert not rec.adjusted and rec.fallback and torch.equal(d, project_conflicting(a, e))
    # Cosine -0.17 below a target of 0.3, sizes 1 and 2: both still fall, GradVac's direction is kept.
    e = 2 * _unit(100)
    candidate = vaccinate(a, e, 0.3) + vaccinate(e, a, 0.3)
    assert float(a @ candidate) > 0 and float(e @ candidate) > 0
    d, (rec,) = GradientProjector("gradvac", initial_target=0.3)(a, e)
    assert rec.adjusted and not rec.fallback and torch.allclose(d, candidate)
    assert float(torch.nn.functional.cosine_similarity(candidate, a + e, dim=0)) < 0.9999  # not the sum


def test_ema_target_update_as_documented():
    projector = GradientProjector("gradvac", ema=0.1, initial_target=0.0)
    gen = torch.Generator().manual_seed(3)
    expected = 0.0
    for _ in range(20):
        a, e = torch.randn(2, 4, generator=gen, dtype=torch.float64)
        _, (rec,) = projector(a, e)
        assert rec.target == pytest.approx(expected)  # the target used is the EMA before this step
        expected = 0.9 * expected + 0.1 * rec.cosine
        assert projector.target() == pytest.approx(expected)
    # A zero gradient has no cosine: the target stays, and the other gradient passes through.
    d, (rec,) = projector(torch.zeros(4, dtype=torch.float64), e)
    assert math.isnan(rec.cosine) and not rec.conflict and not rec.fallback
    assert projector.target() == pytest.approx(expected) and torch.equal(d, e)


def test_groups_shapes_dtypes_and_bad_values():
    gen = torch.Generator().manual_seed(4)
    ga = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen)]
    ge = [-g + 0.1 * torch.randn(g.shape, generator=gen) for g in ga]
    d, recs = GradientProjector("gradvac")(ga, ge)
    assert len(recs) == 1 and [t.shape for t in d] == [t.shape for t in ga] and d[0].dtype == torch.float32
    flat = torch.cat([t.reshape(-1) for t in d])
    assert float(torch.cat([t.reshape(-1) for t in ga]) @ flat) >= -1e-5
    per = GradientProjector("gradvac", per_group=True)
    d, recs = per(ga, ge)
    assert len(recs) == 2 and set(per.targets) == {0, 1}
    for a, e, t in zip(ga, ge, d):  # each group on its own is PCGrad's (target 0 at first)
        assert torch.allclose(t, project_conflicting(a.double().reshape(-1), e.double().reshape(-1)).reshape(a.shape).float(), atol=1e-6)
    with pytest.raises(ValueError, match="identity gradient has non-finite"):
        GradientProjector()(torch.tensor([1.0, float("nan")]), torch.ones(2))
    with pytest.raises(ValueError, match="expression gradient has non-finite"):
        GradientProjector()(torch.ones(2), torch.tensor([float("inf"), 0.0]))
    with pytest.raises(ValueError, match="same structure"):
        GradientProjector()(torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="mode"):
        GradientProjector("adam")


def test_docstring_example_runs():
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module("faceprot.disguise.projection"))
    assert result.attempted >= 3 and result.failed == 0
