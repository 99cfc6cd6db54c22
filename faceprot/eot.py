"""The real-life chain between the optimised mask and a face-recognition system, differentiably.

A mask made in canonical space (:mod:`faceprot.canonical`) does not reach a recogniser as it was
optimised: :func:`~faceprot.canonical.paste_back` warps it into the photo at the photo's own
resolution, the photo is saved with 8 bits, a platform may downscale it and re-save it as JPEG,
and the recogniser finds and aligns the face again, a little differently from us. The
optimiser averages its loss over random draws of that chain (Expectation over Transformation,
Athalye et al. 2018) so the mask survives it.

Every op takes a batch ``(B, 3, H, W)`` of RGB in [0, 1] and is differentiable with respect to
it. The ops that are not differentiable in real life (8-bit rounding, JPEG's coefficient
rounding) pass the gradient straight through (Bengio et al. 2013) or use a smooth surrogate.

:class:`RealLifeChain` draws it per sample, in the order it happens::

    canonical --paste-back--> photo --[platform downscale]--> --8 bits--> --[JPEG]-->
        --re-detection: one warp with another aligner's jitter--> canonical --> recogniser
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["quantize_8bit", "jpeg", "DiffJPEG", "resize", "resample", "jitter", "RealLifeChain"]


class _Quantize8bit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(0, 1).mul_(255).round_().div_(255)

    @staticmethod
    def backward(ctx, grad):
        return grad


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round to the 256 levels of an 8-bit image, with a straight-through gradient.

    Args:
        x: (B, C, H, W) image in [0, 1] (values outside are clipped, as saving a photo does).
    Returns:
        (B, C, H, W) image on the grid k / 255; its gradient is the identity.

    Example:
        >>> quantize_8bit(torch.tensor([0.1, 0.5, 1.2])) * 255
        tensor([ 26., 128., 255.])
    """
    return _Quantize8bit.apply(x)


# ---------------------------------------------------------------------------------------------
# JPEG
# ---------------------------------------------------------------------------------------------

#: JFIF full-range RGB -> YCbCr (ITU-T T.871 section 7), on 0..255 levels; Cb, Cr centred on 0.
_RGB_TO_YCC = np.array([
    [0.299, 0.587, 0.114],
    [-0.168735892, -0.331264108, 0.5],
    [0.5, -0.418687589, -0.081312411],
])

#: The example tables of ITU-T T.81 Annex K (K.1, K.2) that libjpeg (IJG) scales by quality;
#: natural (row-major) order, not zigzag.
_LUMA_TABLE = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
], dtype=np.float64)
_CHROMA_TABLE = np.full((8, 8), 99.0)
_CHROMA_TABLE[:4, :4] = [
    [17, 18, 24, 47],
    [18, 21, 26, 66],
    [24, 26, 56, 99],
    [47, 66, 99, 99],
]


def _dct_matrix() -> np.ndarray:
    """(64, 64) orthonormal 2-D DCT-II on a row-major 8x8 block; JPEG's FDCT is exactly this."""
    n = np.arange(8)
    d = np.cos((2 * n[None, :] + 1) * n[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    d[0] /= np.sqrt(2)
    return np.kron(d, d)


@lru_cache(maxsize=None)
def _constants(dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    def t(a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype, device=device)

    ycc_to_rgb = np.linalg.inv(_RGB_TO_YCC)
    return {
        # RGB in [0, 1] -> Y - 128, Cb, Cr in levels: JPEG level-shifts Y by 128 (T.81 A.3.1);
        # Cb, Cr come out of the matrix already centred.
        "encode": t(_RGB_TO_YCC * 255),
        "encode_bias": t([[-128.0], [0.0], [0.0]]),
        # and back to RGB levels.
        "decode": t(ycc_to_rgb),
        "decode_bias": t(ycc_to_rgb[:, :1] * 128),
        "dct": t(_dct_matrix()),
        "luma": t(_LUMA_TABLE.reshape(1, 64)),
        "chroma": t(_CHROMA_TABLE.reshape(1, 64)),
    }


def _colour(x: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``matrix`` (C_out, C_in) applied to the channels of (B, C_in, H, W), plus (C_out, 1) ``bias``."""
    y = matrix @ x.flatten(2)  # cheaper than a 1x1 convolution on CPU
    return (y if bias is None else y.add_(bias)).view(x.shape[0], -1, *x.shape[2:])


def _ijg_tables(quality: torch.Tensor, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 64) luminance and chrominance tables for a (B,) float64 quality, as libjpeg makes them.

    IJG ``jpeg_quality_scaling`` + ``jpeg_add_quant_table`` with ``force_baseline`` (what Pillow
    asks for): scale = 5000 / q below 50, else 200 - 2 q; entries floor((T * scale + 50) / 100)
    clipped to [1, 255].
    """
    c = _constants(torch.float64, device)
    q = quality.clamp(1, 100)[:, None]
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)

    def table(base: torch.Tensor) -> torch.Tensor:
        return torch.floor((base * scale + 50) / 100).clamp(1, 255).to(dtype)

    return table(c["luma"]), table(c["chroma"])


@lru_cache(maxsize=256)
def _ijg_tables_for(quality: float, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    return _ijg_tables(torch.tensor([quality], dtype=torch.float64, device=device), dtype, device)


def _quality_tables(quality, batch: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 64) tables for ``quality``: a number (the chain's case, cached) or a (B,) tensor."""
    if isinstance(quality, (int, float)):
        luma, chroma = _ijg_tables_for(float(quality), dtype, device)
        return luma.expand(batch, -1), chroma.expand(batch, -1)
    q = torch.as_tensor(quality, dtype=torch.float64, device=device)
    q = q.expand(batch) if q.ndim == 0 else q
    if q.shape != (batch,):
        raise ValueError(f"quality must be a number or a ({batch},) tensor, got shape {tuple(q.shape)}")
    return _ijg_tables(q, dtype, device)


def _cubic_round(x: torch.Tensor) -> torch.Tensor:
    """Shin & Song 2017: r + (x - r)^3, whose gradient 3 (x - r)^2 is defined between half-integers."""
    r = torch.round(x).detach()
    return r + (x - r) ** 3


def _blocks(plane: torch.Tensor, table: torch.Tensor, dct: torch.Tensor, rnd) -> torch.Tensor:
    """Code a (B, C, H, W) plane (H, W multiples of 8) in 8x8 DCT blocks and decode it to levels.

    ``table`` is (B, 64). The quantiser is folded into the (orthonormal) DCT matrices, one per
    sample, so a block costs two small matrix products.
    """
    b, c, h, w = plane.shape
    blocks = plane.reshape(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(b, -1, 64)
    coef = rnd(torch.bmm(blocks, dct.T[None] / table[:, None, :]))
    blocks = rnd(torch.bmm(coef, table[:, :, None] * dct[None]))
    return blocks.reshape(b, c, h // 8, w // 8, 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


def _macroblock_pad(shape: torch.Size, offset: tuple[int, int]) -> tuple[int, int, int, int]:
    """F.pad amounts (left, right, top, bottom) that put an image at ``offset`` in whole 16x16 macro-blocks."""
    h, w = shape[-2:]
    oy, ox = offset
    return ox, -(w + ox) % 16, oy, -(h + oy) % 16


def _codec(x: torch.Tensor, luma_q: torch.Tensor, chroma_q: torch.Tensor, offset: tuple[int, int],
           rnd) -> torch.Tensor:
    """JPEG encode + decode of (B, 3, H, W) RGB in [0, 1] to RGB levels, not yet clipped.

    ``rnd`` rounds: ``torch.round`` or a differentiable surrogate.
    """
    b, _, h, w = x.shape
    pad = _macroblock_pad(x.shape, offset)
    if any(pad):
        # libjpeg fills partial macro-blocks by repeating the edge; the offset puts the image
        # anywhere in its first macro-block, as a face is anywhere in a photo.
        x = F.pad(x, pad, mode="replicate")
    c = _constants(x.dtype, x.device)
    ycc = rnd(_colour(x, c["encode"], c["encode_bias"]))  # the encoder holds YCbCr in 8 bits
    y, cbcr = ycc[:, :1], ycc[:, 1:]
    cbcr = rnd((cbcr[..., ::2, ::2] + cbcr[..., 1::2, ::2] + cbcr[..., ::2, 1::2] + cbcr[..., 1::2, 1::2]) / 4)
    # The decoder's range limit per plane is left to the final clip of RGB (0.01 level on LFW
    # faces), so that the straight-through gradient is masked by one clip, the output's.
    y = _blocks(y, luma_q, c["dct"], rnd)
    cbcr = _blocks(cbcr, chroma_q, c["dct"], rnd)
    # libjpeg's "fancy" upsampling is a triangle filter, 3/4 and 1/4: bilinear at 2x.
    cbcr = rnd(F.interpolate(cbcr, scale_factor=2, mode="bilinear", align_corners=False))
    rgb = rnd(_colour(torch.cat([y, cbcr], 1), c["decode"], c["decode_bias"]))
    return rgb[..., pad[2]:pad[2] + h, pad[0]:pad[0] + w]


def _upsample2x_adjoint(g: torch.Tensor) -> torch.Tensor:
    """Adjoint, along the last axis, of bilinear 2x upsampling (align_corners=False, edge clamped).

    Forward: out[2i] = 3/4 in[i] + 1/4 in[i-1], out[2i+1] = 3/4 in[i] + 1/4 in[i+1], with the
    edge pixel standing in for in[-1] and in[n].
    """
    even, odd = g[..., 0::2], g[..., 1::2]
    next_even = torch.cat([even[..., 1:], odd[..., -1:]], -1)
    prev_odd = torch.cat([even[..., :1], odd[..., :-1]], -1)
    return 0.75 * (even + odd) + 0.25 * (next_even + prev_odd)


def _replicate_pad_adjoint(g: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Adjoint of ``F.pad(x, pad, mode="replicate")``: the padding's gradient folds onto the edges."""
    left, right, top, bottom = pad
    h, w = g.shape[-2] - top - bottom, g.shape[-1] - left - right
    rows = g[..., top:top + h, :].clone()
    rows[..., 0, :] += g[..., :top, :].sum(-2)
    rows[..., -1, :] += g[..., top + h:, :].sum(-2)
    out = rows[..., left:left + w].clone()
    out[..., 0] += rows[..., :left].sum(-1)
    out[..., -1] += rows[..., left + w:].sum(-1)
    return out


class _JPEGStraightThrough(torch.autograd.Function):
    """JPEG with exact rounding; every rounding passes the gradient straight through.

    Rounding as the identity cancels the DCT against its inverse, so the gradient is that of the
    codec's linear part, in levels L(x) = 255 x + D_c (U P - I) E_c x, with E_c the RGB -> CbCr
    rows, P the 2x2 average, U the 2x upsampling and D_c the CbCr -> RGB columns (the colour
    matrices are inverses), masked where the output clips. Written out, forward + backward of a
    256x256 image take 3.8 ms on one CPU thread, against 6.2 ms through autograd.
    """

    @staticmethod
    def forward(ctx, x, luma_q, chroma_q, offset):
        levels = _codec(x, luma_q, chroma_q, offset, torch.round)
        ctx.save_for_backward((levels >= 0) & (levels <= 255))
        ctx.pad = _macroblock_pad(x.shape, offset)
        return levels.clamp_(0, 255).div_(255)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        c = _constants(grad.dtype, grad.device)
        g = grad * inside / 255
        gc = _colour(F.pad(g, ctx.pad), c["decode"][:, 1:].T)  # D_c^T crop^T g
        gu = _upsample2x_adjoint(_upsample2x_adjoint(gc).transpose(-1, -2)).transpose(-1, -2)  # U^T
        b, _, h, w = gu.shape
        gp = (gu / 4)[..., None, :, None].expand(b, 2, h, 2, w, 2).reshape(b, 2, 2 * h, 2 * w)  # P^T
        gx = _colour(gp - gc, c["encode"][1:].T)  # E_c^T (P^T U^T - I)
        return 255 * g + _replicate_pad_adjoint(gx, ctx.pad), None, None, None


def jpeg(x: torch.Tensor, quality=75, rounding: str = "ste", offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """A differentiable JPEG save and load (baseline, 4:2:0, IJG tables), as Pillow does it.

    Steps in libjpeg's order: RGB -> YCbCr (JFIF full range); chroma averaged 2x2; 8x8 block DCT;
    divide by the quality-scaled tables; round; multiply back; inverse DCT; chroma upsampled with
    libjpeg's "fancy" triangle filter; back to RGB; clipped. The codec's integer steps (YCbCr and
    the decoded planes held in 8 bits) are rounded too: on LFW faces that halves the gap to
    Pillow's output (0.7 -> 0.3 levels at quality 75).

    Args:
        x: (B, 3, H, W) RGB in [0, 1], any size (partial 16x16 macro-blocks are filled by
            repeating the edge, as libjpeg does).
        quality: IJG quality 1..100, a number or a (B,) tensor (one per sample).
        rounding: how every rounding in the codec is done. ``"ste"``: exactly, with the gradient
            passed straight through; ``"cubic"``: ``r + (x - r)^3`` (Shin & Song 2017), smooth
            between half-integers but not the real forward.
        offset: (y, x) position, 0..15, of the image's top-left pixel in its first macro-block.
    Returns:
        (B, 3, H, W) RGB in [0, 1], the decoded image (on the 8-bit grid with ``"ste"``).

    Example:
        >>> jpeg(torch.rand(2, 3, 32, 32), torch.tensor([75, 90])).shape
        torch.Size([2, 3, 32, 32])
    """
    luma_q, chroma_q = _quality_tables(quality, x.shape[0], x.dtype, x.device)
    offset = (int(offset[0]) % 16, int(offset[1]) % 16)
    if rounding == "ste":
        return _JPEGStraightThrough.apply(x, luma_q, chroma_q, offset)
    if rounding == "cubic":
        return (_codec(x, luma_q, chroma_q, offset, _cubic_round) / 255).clamp(0, 1)
    raise ValueError(f"rounding must be 'ste' or 'cubic', got {rounding!r}")


class DiffJPEG(nn.Module):
    """Module form of :func:`jpeg`: ``DiffJPEG(quality=75)(x)``; ``forward(x, quality)`` overrides it."""

    def __init__(self, quality=75, rounding: str = "ste"):
        super().__init__()
        self.quality = quality
        self.rounding = rounding

    def forward(self, x: torch.Tensor, quality=None) -> torch.Tensor:
        return jpeg(x, self.quality if quality is None else quality, self.rounding)


# ---------------------------------------------------------------------------------------------
# Resolution and alignment
# ---------------------------------------------------------------------------------------------


def resize(x: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """Bilinear resize (pixel centres aligned, as cv2 and Pillow do); antialiased when it shrinks.

    Args:
        x: (B, C, H, W). size: (h, w) of the result.
        antialias: average over the shrunk footprint (Pillow's and a platform's resize) rather
            than sample 4 pixels (cv2.warpAffine, which :func:`~faceprot.canonical.paste_back` uses).
    Returns:
        (B, C, h, w); ``x`` itself when the size does not change.
    """
    size = (int(size[0]), int(size[1]))
    if size == tuple(x.shape[-2:]):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias and shrink)


def resample(x: torch.Tensor, scale: float, antialias: bool = True) -> torch.Tensor:
    """Resize to ``scale`` times the size and back: the detail lost at another resolution.

    Models paste-back into a photo whose face is ``scale`` times the canonical face (down then
    up for ``scale < 1``, up then down above), and platform downscaling, on their own;
    :class:`RealLifeChain` does both per sample with the 8-bit and JPEG steps in between.

    Args:
        x: (B, C, H, W). scale: > 0; 1 is the identity.
    Returns:
        (B, C, H, W).
    """
    h, w = x.shape[-2:]
    return resize(resize(x, (max(1, round(h * scale)), max(1, round(w * scale))), antialias), (h, w), antialias)


def _uniform(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """(n,) float64 uniform in [0, 1) on the CPU, from ``generator`` (or torch's default)."""
    device = generator.device if generator is not None else "cpu"
    return torch.rand(n, generator=generator, device=device, dtype=torch.float64).cpu()


def _jitter_theta(batch: int, size: tuple[int, int], max_rotate_deg: float, max_scale: float,
                  max_shift_px: float, generator: torch.Generator | None) -> torch.Tensor:
    """(B, 2, 3) float64 ``affine_grid`` matrices of random similarity warps of a (h, w) image."""
    h, w = size
    u = _uniform(4 * batch, generator).view(batch, 4) * 2 - 1
    angle = u[:, 0] * math.radians(max_rotate_deg)
    scale = 1 + u[:, 1] * max_scale
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    shift = u[:, 2:] * max_shift_px
    # In pixels about the centre the warp is p_in = A p_out + t. affine_grid's coordinates are
    # normalised by 2 / size on each axis (align_corners=False), so theta = D A D^-1 | D t.
    sx, sy = 2 / w, 2 / h
    return torch.stack([
        torch.stack([cos, -sin * sx / sy, shift[:, 0] * sx], -1),
        torch.stack([sin * sy / sx, cos, shift[:, 1] * sy], -1),
    ], 1)


def _warp(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sample (B, C, h_in, w_in) at ``theta``'s (B, 2, 3) map of a (B, C, *size) output, bilinear.

    ``theta`` is in ``affine_grid``'s normalised coordinates (align_corners=False), which span the
    image whatever its resolution, so one ``theta`` reads the face from a photo of any size:
    resolution change and warp are one resampling. Outside the image the border repeats (an
    aligner reads real photo there, not black).
    """
    h, w = size
    theta = theta.to(x.device, x.dtype)[:, :, :, None, None]
    xs = ((torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1)[None, :]  # pixel centres
    ys = ((torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1)[:, None]
    # The affine map by broadcasting: affine_grid's batched products with 3-vectors cost 10x more.
    grid = theta[:, :, 0] * xs + theta[:, :, 1] * ys + theta[:, :, 2]  # (B, 2, h, w)
    return F.grid_sample(x, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=False)


def jitter(x: torch.Tensor, max_rotate_deg: float = 3.0, max_scale: float = 0.04,
           max_shift_px: float = 3.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random small similarity warp per sample: another pipeline's alignment of the same face.

    Rotation about the centre uniform in +-``max_rotate_deg``, scale uniform in 1 +- ``max_scale``,
    shift uniform in +-``max_shift_px`` pixels on each axis; bilinear, border repeated.

    Args:
        x: (B, C, H, W).
        generator: source of the 4 B random numbers; None uses torch's default.
    Returns:
        (B, C, H, W); ``x`` resampled at its own pixel centres (so unchanged) when all ranges are 0.
    """
    size = tuple(x.shape[-2:])
    theta = _jitter_theta(x.shape[0], size, max_rotate_deg, max_scale, max_shift_px, generator)
    return _warp(x, theta, size)


# ---------------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------------


class RealLifeChain(nn.Module):
    """Random draws of what happens to a canonical face between the optimiser and a recogniser.

    Per sample, in the order it happens:

    1. paste-back into a photo whose face is ``s`` times the canonical one, ``s`` log-uniform
       in ``paste_scale`` (as likely halved as doubled);
    2. with probability ``downscale_prob``, a platform downscale to a uniform fraction in
       ``downscale`` of that. Steps 1 and 2 are one bilinear resize: antialiased when the
       platform shrinks, as image libraries do, and otherwise not, as
       :func:`~faceprot.canonical.paste_back`'s ``cv2.warpAffine`` is not;
    3. 8-bit rounding (once, for the saved photo and the platform's copy);
    4. with probability ``jpeg_prob``, a JPEG re-save at an integer quality uniform in
       ``jpeg_quality``, at the photo's resolution and at a random macro-block offset, so its
       8x8 blocks cover as much of the face as they would, wherever it sits;
    5. re-detection: one bilinear warp back to canonical size with the alignment jitter of
       :func:`jitter` (as :func:`~faceprot.canonical.align` is one warp).

    A photo finer than canonical (``s`` or ``s * downscale`` above 1) is simulated at canonical
    resolution: going up and back loses little, while 8-bit and JPEG noise at canonical
    resolution is the stronger of the two, so this is a harsher and much cheaper stand-in (a
    1.6x photo costs 2.6x the pixels at every stage).

    Args:
        enabled: False makes ``forward`` return its input.
        jpeg_rounding: see :func:`jpeg`.
    Shape:
        (B, 3, H, W) RGB in [0, 1] -> (B, 3, H, W) RGB in [0, 1].

    Example:
        >>> chain = RealLifeChain()
        >>> chain(torch.rand(2, 3, 64, 64), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(self, enabled: bool = True, *,
                 max_rotate_deg: float = 3.0, max_scale: float = 0.04, max_shift_px: float = 3.0,
                 paste_scale: tuple[float, float] = (0.6, 1.6),
                 downscale_prob: float = 0.5, downscale: tuple[float, float] = (0.5, 0.9),
                 jpeg_prob: float = 0.5, jpeg_quality: tuple[int, int] = (70, 95),
                 jpeg_rounding: str = "ste"):
        super().__init__()
        self.enabled = enabled
        self.max_rotate_deg, self.max_scale, self.max_shift_px = max_rotate_deg, max_scale, max_shift_px
        self.paste_scale = paste_scale
        self.downscale_prob, self.downscale = downscale_prob, downscale
        self.jpeg_prob, self.jpeg_quality, self.jpeg_rounding = jpeg_prob, jpeg_quality, jpeg_rounding

    def extra_repr(self) -> str:
        return (f"enabled={self.enabled}, paste_scale={self.paste_scale}, downscale_prob={self.downscale_prob}, "
                f"downscale={self.downscale}, jpeg_prob={self.jpeg_prob}, jpeg_quality={self.jpeg_quality}, "
                f"jitter=({self.max_rotate_deg} deg, {self.max_scale}, {self.max_shift_px} px)")

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.enabled:
            return x
        b, _, h, w = x.shape
        # A fixed count of draws per sample, whatever is chosen, so a seed gives the same chain.
        draws = _uniform(7 * b, generator).view(b, 7).tolist()
        theta = _jitter_theta(b, (h, w), self.max_rotate_deg, self.max_scale, self.max_shift_px, generator)
        log_lo, log_hi = (math.log(v) for v in self.paste_scale)
        (d_lo, d_hi), (q_lo, q_hi) = self.downscale, self.jpeg_quality
        out = []
        # split, not x[i:i + 1]: a slice's backward writes a zero-filled full batch per sample.
        for y, u, t in zip(x.split(1), draws, theta.split(1)):
            u_paste, u_down, u_factor, u_jpeg, u_quality, u_oy, u_ox = u
            # Per sample: each photo has its own size, and small batches keep tensors in cache.
            res = math.exp(log_lo + (log_hi - log_lo) * u_paste)
            downscaled = u_down < self.downscale_prob
            if downscaled:
                res *= d_lo + (d_hi - d_lo) * u_factor
            if res < 1:
                y = resize(y, (max(1, round(h * res)), max(1, round(w * res))), antialias=downscaled)
            y = quantize_8bit(y)
            if u_jpeg < self.jpeg_prob:
                quality = min(q_lo + math.floor(u_quality * (q_hi - q_lo + 1)), q_hi)
                y = jpeg(y, quality, self.jpeg_rounding, offset=(math.floor(16 * u_oy), math.floor(16 * u_ox)))
            out.append(_warp(y, t, (h, w)))
        return torch.cat(out)
