"""The real-life chain (EOT): each op's forward against the real thing, and its gradient."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import shared_path
from faceprot.eot import DiffJPEG, RealLifeChain, jitter, jpeg, quantize_8bit, resample

FACE = ("assets", "faces", "lfw", "Alejandro_Toledo", "Alejandro_Toledo_0001.jpg")


@pytest.fixture(scope="module")
def face() -> Image.Image:
    """A real face, 256x256 like the canonical square, as the 8-bit image a photo is."""
    return Image.open(shared_path(*FACE)).convert("RGB").resize((256, 256), Image.BICUBIC)


def to_tensor(img: Image.Image, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].to(dtype) / 255


def pillow_jpeg(img: Image.Image, quality: int) -> torch.Tensor:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, subsampling="4:2:0")
    return to_tensor(Image.open(buf).convert("RGB"))


def levels(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference in 8-bit levels."""
    return float((a - b).detach().abs().mean() * 255)


def check_gradient(op, shape=(1, 3, 16, 16), dims: int = 4, seed: int = 0) -> None:
    """gradcheck of ``op`` in float64 along a random ``dims``-dimensional subspace of images.

    The base image stays inside (0.3, 0.7), away from clipping, so the op is smooth there.
    """
    gen = torch.Generator().manual_seed(seed)
    base = 0.3 + 0.4 * torch.rand(shape, generator=gen, dtype=torch.float64)
    basis = torch.randn((dims, *shape), generator=gen, dtype=torch.float64) * 0.01
    z = torch.zeros(dims, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: op(base + torch.einsum("k,k...->...", z, basis)), (z,))


# -- 8 bits -------------------------------------------------------------------------------------


def test_quantize_8bit_rounds_to_levels_with_an_identity_gradient():
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 1.2 - 0.1
    x.requires_grad_()
    y = quantize_8bit(x)
    assert torch.equal(y * 255, torch.round(x.detach().clamp(0, 1) * 255))
    v = torch.randn_like(y)
    (g,) = torch.autograd.grad(y, x, v)
    assert torch.equal(g, v)


# -- JPEG ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("quality", [75, 90])
def test_jpeg_matches_pillow_on_a_real_face(face, quality):
    x = to_tensor(face)
    real = pillow_jpeg(face, quality)
    ours = jpeg(x, quality)
    err, pil_err = levels(ours, real), levels(x, real)
    print(f"\nq{quality}: ours vs Pillow {err:.3f} levels; Pillow vs original {pil_err:.3f}")
    assert err < 0.6  # measured 0.3-0.45 on LFW faces
    assert err < 0.4 * pil_err
    # and it loses what JPEG loses, not something else: the same distance from the original
    assert levels(ours, x) == pytest.approx(pil_err, rel=0.05)


def test_jpeg_loses_less_as_quality_rises(face):
    x = to_tensor(face)
    errors = [levels(jpeg(x, q), x) for q in (10, 30, 50, 70, 90, 100)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


def test_jpeg_takes_a_quality_per_sample(face):
    x = to_tensor(face)
    batch = torch.cat([x, x.flip(-1), x])
    out = jpeg(batch, torch.tensor([60, 95, 80]))
    for i, q in enumerate((60, 95, 80)):
        assert torch.equal(out[i:i + 1], jpeg(batch[i:i + 1], q))
    assert torch.equal(DiffJPEG(95)(batch[1:2]), out[1:2])


def chroma_420(x: torch.Tensor) -> torch.Tensor:
    """What JPEG does to an image apart from its roundings: 4:2:0 chroma, written independently.

    BT.601 full-range (JFIF) YCbCr; Cb, Cr averaged over 2x2 and upsampled bilinearly (libjpeg's
    triangle filter). Needs H, W even.
    """
    to_ycc = torch.tensor([[0.299, 0.587, 0.114],
                           [-0.299 / 1.772, -0.587 / 1.772, 0.5],
                           [0.5, -0.587 / 1.402, -0.114 / 1.402]], dtype=x.dtype)
    ycc = torch.einsum("ij,bjhw->bihw", to_ycc, x)
    chroma = F.interpolate(F.avg_pool2d(ycc[:, 1:], 2), scale_factor=2, mode="bilinear", align_corners=False)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_ycc), torch.cat([ycc[:, :1], chroma], 1))


def chroma_420_at(x: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """:func:`chroma_420` of an image placed at ``offset`` in 16x16 macro-blocks, edges repeated."""
    (h, w), (oy, ox) = x.shape[-2:], offset
    padded = F.pad(x, (ox, -(w + ox) % 16, oy, -(h + oy) % 16), mode="replicate")
    return chroma_420(padded)[..., oy:oy + h, ox:ox + w]


@pytest.mark.parametrize("shape,offset", [((2, 3, 32, 48), (0, 0)), ((1, 3, 40, 56), (3, 11))])
def test_jpeg_straight_through_gradient_is_that_of_its_chroma_subsampling(shape, offset):
    # With every rounding passed straight through, the DCT cancels against its inverse: what is
    # left is the colour conversion and 4:2:0 chroma. Partial macro-blocks are padded by
    # repeating the edge, and the padding's gradient folds back onto the edge.
    gen = torch.Generator().manual_seed(1)
    x = (0.2 + 0.6 * torch.rand(shape, generator=gen, dtype=torch.float64)).requires_grad_()
    v = torch.randn(shape, generator=gen, dtype=torch.float64)
    (g,) = torch.autograd.grad(jpeg(x, 75, offset=offset), x, v)
    (expected,) = torch.autograd.grad(chroma_420_at(x, offset), x, v)
    torch.testing.assert_close(g, expected, rtol=0, atol=1e-12)
    # and at quality 100 (every step 1) the forward is that linear part, give or take roundings
    assert levels(jpeg(x, 100, offset=offset), chroma_420_at(x, offset)) < 0.6


def test_jpeg_gradient_is_zero_where_the_output_clips():
    x = torch.full((1, 3, 16, 16), 1.2, requires_grad=True)
    (g,) = torch.autograd.grad(jpeg(x, 80).sum(), x)
    assert torch.equal(g, torch.zeros_like(g))


def test_jpeg_cubic_rounding_is_smoothly_differentiable():
    check_gradient(lambda x: jpeg(x, 75, rounding="cubic"))
    check_gradient(lambda x: jpeg(x, 90, rounding="cubic", offset=(5, 2)), shape=(1, 3, 24, 16))


# -- resolution and alignment -------------------------------------------------------------------


def test_resample_at_scale_1_is_the_identity_and_loses_more_the_smaller_it_goes(face):
    x = to_tensor(face)
    assert torch.equal(resample(x, 1.0), x)
    losses = [levels(resample(x, s), x) for s in (0.9, 0.7, 0.5)]
    assert losses[0] < losses[1] < losses[2], losses
    # antialiased: a pattern finer than the smaller image averages out instead of aliasing
    stripes = torch.zeros(1, 3, 64, 64)
    stripes[..., ::2] = 1
    inner = (..., slice(8, -8), slice(8, -8))  # away from the edges, where the filter is cut
    assert resample(stripes, 1 / 3)[inner].sub(0.5).abs().max() < 0.05
    assert resample(stripes, 1 / 3, antialias=False)[inner].sub(0.5).abs().max() > 0.25


@pytest.mark.parametrize("scale", [0.6, 1.5])
def test_resample_is_differentiable(scale):
    check_gradient(lambda x: resample(x, scale))


def test_jitter_with_no_range_is_the_identity():
    x = torch.rand(3, 3, 32, 48)
    torch.testing.assert_close(jitter(x, 0, 0, 0, torch.Generator().manual_seed(0)), x, rtol=0, atol=1e-6)


def test_jitter_moves_a_face_point_within_its_ranges():
    x = torch.zeros(16, 1, 64, 64)
    x[..., 15:17, 47:49] = 1  # a dot 20 px from the centre (32, 32), at (48, 16) in x, y
    out = jitter(x, max_rotate_deg=3, max_scale=0.04, max_shift_px=3, generator=torch.Generator().manual_seed(0))
    ys, xs = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="ij")
    mass = out.sum((-1, -2))
    cx, cy = (out * xs).sum((-1, -2)) / mass, (out * ys).sum((-1, -2)) / mass
    moved = torch.hypot(cx - 48, cy - 16).flatten()
    # |rotation + scale| x radius + shift: 20 * (0.04 + sin 3 deg) + 3 * sqrt(2), plus slack
    bound = 20 * (0.04 + np.sin(np.radians(3))) + 3 * np.sqrt(2) + 0.5
    assert moved.max() < bound
    assert moved.std() > 0.5  # each sample has its own warp


def test_jitter_is_differentiable():
    check_gradient(lambda x: jitter(x, 3, 0.04, 3, torch.Generator().manual_seed(0)))


# -- the chain ----------------------------------------------------------------------------------


def test_chain_is_reproducible_under_a_seed_and_differs_across_seeds(face):
    x = to_tensor(face).expand(6, -1, -1, -1)
    chain = RealLifeChain()
    a = chain(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, chain(x, torch.Generator().manual_seed(0)))
    b = chain(x, torch.Generator().manual_seed(1))
    assert levels(a, b) > 1
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert levels(a[0], a[1]) > 1  # one draw per sample


def test_chain_disabled_is_the_identity():
    x = torch.rand(2, 3, 32, 32)
    assert RealLifeChain(enabled=False)(x, torch.Generator().manual_seed(0)) is x


def test_chain_with_nothing_drawn_is_8_bit_rounding():
    x = torch.rand(2, 3, 32, 32)
    still = RealLifeChain(max_rotate_deg=0, max_scale=0, max_shift_px=0, paste_scale=(1, 1),
                          downscale_prob=0, jpeg_prob=0)
    torch.testing.assert_close(still(x, torch.Generator().manual_seed(0)), quantize_8bit(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("options", [
    {}, {"downscale_prob": 1, "jpeg_prob": 1}, {"jpeg_rounding": "cubic", "jpeg_prob": 1},
])
def test_chain_passes_a_gradient_through_every_branch(face, options):
    x = to_tensor(face).expand(4, -1, -1, -1).clone().requires_grad_()
    out = RealLifeChain(**options)(x, torch.Generator().manual_seed(3))
    (g,) = torch.autograd.grad(out.square().sum(), x)
    assert torch.isfinite(g).all()
    assert (g.abs().flatten(1).sum(1) > 0).all()  # every sample gets a gradient
