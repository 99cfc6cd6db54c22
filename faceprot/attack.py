"""The pieces every protection method's optimiser shares, on canonical tensors.

All images are canonical tensors ``(B, 3, S, S)`` RGB in [0, 1] (see :mod:`faceprot.canonical`);
embeddings are ``(B, D)``. Everything here is differentiable with respect to the images.

* :func:`similarity`: the one "higher is more alike" score a loss uses, in threshold units;
* :func:`project`: the L-inf projection onto a per-pixel budget;
* :func:`sign_step`: one signed PGD step followed by that projection;
* :class:`BudgetSpace`: the coordinates a budget is measured in: RGB (the paper's box) or
  luminance and chroma (YCbCr), a linear map of RGB, so a box there is still projected exactly;
* :func:`mean_magnitude`, :func:`unit_scale`, :func:`gaussian_smooth`, :func:`elastic_warp`,
  :func:`resize_pad`: gradient and input shaping;
* :class:`ConvDropout`: model augmentation, dropout on a surrogate's convolution outputs;
* :func:`device_of`: the one device an ensemble of surrogates sits on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .recognizers.base import module_device


def similarity(model, emb: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Higher-is-more-alike score per sample, in units where the model's threshold is about 1 apart
    from 0: cosine for cosine models, -L2 / threshold for L2 models (dlib's descriptors are not
    centred, so their cosines all sit near 1 and carry little gradient).

    Args:
        model: a surrogate (its ``metric`` and ``threshold`` are used).
        emb: (B, D) embeddings.
        ref: (D,) one reference, or (B, D) / (1, D) references.
    Returns:
        (B,) similarities.
    """
    if ref.dim() == 1:
        ref = ref[None]
    if model.metric == "cosine":
        return F.cosine_similarity(emb, ref, dim=-1)
    return -torch.linalg.vector_norm(emb - ref, dim=-1) / model.threshold.value


def project(delta: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
    """Clip a perturbation into its per-pixel L-inf budget: |delta| <= budget (broadcast)."""
    return torch.maximum(torch.minimum(delta, budget), -budget)


@torch.no_grad()
def sign_step(delta: torch.Tensor, grad: torch.Tensor, alpha: float | torch.Tensor, budget: torch.Tensor) -> None:
    """One PGD step in place: ``delta -= alpha * sign(grad)``, then :func:`project` onto the budget.

    ``alpha`` is one step size, or a per-pixel map that broadcasts against ``delta``."""
    delta -= alpha * grad.sign()
    delta.copy_(project(delta, budget))


#: BT.601 full-range YCbCr (JPEG's): rows give Y (luminance), Cb (blue - yellow) and Cr (red -
#: green) from R, G, B. Each row's absolute values sum to 1, so an 8-bit rounding of R, G and B
#: (at most 0.5 a channel) moves each of Y, Cb and Cr by at most 0.5 of a level.
YCBCR_FROM_RGB = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


class BudgetSpace:
    """The coordinates a per-pixel L-inf budget is measured in, on channel dimension -3.

    ``"rgb"``: the paper's box, |delta_c| <= budget in each of R, G, B (the identity map).
    ``"ycbcr"``: a box in luminance and chroma, |(M delta)_k| <= budget_k, M = :data:`YCBCR_FROM_RGB`;
    M is linear and invertible, so a perturbation kept in YCbCr coordinates is clipped exactly
    there and mapped to RGB only where an image needs it.
    """

    def __init__(self, name: str = "rgb"):
        if name not in ("rgb", "ycbcr"):
            raise ValueError(f"Unknown budget space {name!r}: 'rgb' or 'ycbcr'.")
        self.name = name
        m = torch.tensor(YCBCR_FROM_RGB, dtype=torch.float64)
        self._from_rgb, self._to_rgb = m.float(), torch.linalg.inv(m).float()

    def __repr__(self) -> str:
        return f"BudgetSpace({self.name!r})"

    @staticmethod
    def _apply(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,...jhw->...ihw", m.to(x.device, x.dtype), x)

    def from_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) RGB -> the space's coordinates (RGB: ``x`` itself, the same tensor)."""
        return x if self.name == "rgb" else self._apply(self._from_rgb, x)

    def to_rgb(self, c: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) the space's coordinates -> RGB (RGB: ``c`` itself, the same tensor)."""
        return c if self.name == "rgb" else self._apply(self._to_rgb, c)


def mean_magnitude(g: torch.Tensor, per_item: bool = False) -> torch.Tensor:
    """Mean |g|, plus 1e-20 so that it divides: of the whole tensor, or with ``per_item`` of each
    item of the batch (B, C, H, W), as (B, 1, 1, 1)."""
    return (g.abs().mean(dim=(1, 2, 3), keepdim=True) if per_item else g.abs().mean()) + 1e-20


def unit_scale(g: torch.Tensor) -> torch.Tensor:
    """A gradient scaled to mean |g| = 1, so every model has an equal say in a sign step."""
    return g / mean_magnitude(g)


def gaussian_smooth(g: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, C, H, W) smoothed per channel by a normalised Gaussian of ``sigma`` px (0: unchanged)."""
    if sigma <= 0:
        return g
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=g.dtype, device=g.device) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    c = g.shape[1]
    g = F.conv2d(F.pad(g, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(g, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def elastic_warp(x: torch.Tensor, amplitude: float, generator: torch.Generator, grid: int = 5) -> torch.Tensor:
    """(B, C, H, W) warped by a smooth random displacement field per sample, bilinear, border repeated.

    The field is a ``grid`` x ``grid`` lattice of independent normal displacements (std
    ``amplitude`` px per axis), interpolated bicubically over the image. The lattice is drawn on
    ``generator``'s device (the CPU's, in faceprot) whatever ``x``'s is, so a seed gives the same
    field on a GPU as on a CPU.
    """
    if amplitude <= 0:
        return x
    b, _, h, w = x.shape
    coarse = torch.randn(b, 2, grid, grid, generator=generator, dtype=x.dtype, device=generator.device)
    field = F.interpolate(coarse.to(x.device) * amplitude, size=(h, w), mode="bicubic", align_corners=True)
    xs = (torch.arange(w, dtype=x.dtype, device=x.device) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=x.dtype, device=x.device) * 2 + 1) / h - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    sample = torch.stack([gx + field[:, 0] * 2 / w, gy + field[:, 1] * 2 / h], -1)
    return F.grid_sample(x, sample, mode="bilinear", padding_mode="border", align_corners=False)


def resize_pad(x: torch.Tensor, prob: float, min_scale: float, generator: torch.Generator) -> torch.Tensor:
    """Input diversity (DI-FGSM, Xie et al. 2019): each sample, with probability ``prob``, shrunk
    to a random size in [``min_scale`` * S, S] (bilinear) and zero-padded back to S at a random
    offset; differentiable. Draws come from ``generator`` (the CPU's in faceprot).

    Args:
        x: (B, C, S, S) images in [0, 1].
    Returns:
        (B, C, S, S); ``x`` itself when ``prob`` is 0.
    """
    if prob <= 0:
        return x
    b, _, h, w = x.shape
    out = []
    for i in range(b):
        if float(torch.rand((), generator=generator)) >= prob:
            out.append(x[i:i + 1])
            continue
        s = float(torch.empty(()).uniform_(min_scale, 1.0, generator=generator))
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        top = int(torch.randint(0, h - nh + 1, (), generator=generator))
        left = int(torch.randint(0, w - nw + 1, (), generator=generator))
        small = F.interpolate(x[i:i + 1], size=(nh, nw), mode="bilinear", align_corners=False)
        out.append(F.pad(small, (left, w - nw - left, top, h - nh - top)))
    return torch.cat(out)


class FeatureDisruption:
    """An intermediate-feature loss for transfer (Feature Disruptive Attack, Ganeshan et al. 2019):
    while the context is open, the output f (B, C, H, W) of the middle residual unit of each model
    that has ``units`` (dlib-resnet's PyTorch port; not MobileFaceNet's ONNX graph) is kept, and
    :meth:`loss` gives per sample log ||f where f > its channel mean|| - log ||f where below||:
    lowering it suppresses the features that fire and lifts those that do not, a change other
    networks' features tend to share. Needs no clean reference, so the views' random chain is free.
    """

    def __init__(self, models: list, enabled: bool = True):
        self.models, self.enabled, self.handles, self.kept = list(models), enabled, [], []

    def _hook(self, module, inputs, out):
        self.kept.append(out)

    def __enter__(self) -> "FeatureDisruption":
        if self.enabled:
            for m in self.models:
                units = next((mod.units for mod in m.modules() if hasattr(mod, "units")), None)
                if units is not None and len(units):
                    self.handles.append(units[len(units) // 2].register_forward_hook(self._hook))
        return self

    def loss(self) -> torch.Tensor | None:
        """(B,) the FDA term summed over the hooked features of the last forward pass, or None."""
        if not self.kept:
            return None
        total = 0
        for f in self.kept:
            mean = f.mean(dim=1, keepdim=True)
            hi = (f * (f > mean)).flatten(1).norm(dim=1)
            lo = (f * (f <= mean)).flatten(1).norm(dim=1)
            total = total + torch.log(hi + 1e-6) - torch.log(lo + 1e-6)
        self.kept = []
        return total

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles, self.kept = [], []


class ConvDropout:
    """Model augmentation (Ghost Networks' dropout erosion, Li et al. 2020): while the context is
    open, every ``nn.Conv2d`` output of the given models is multiplied by a fresh Bernoulli mask
    (keep 1 - ``p``, inverted scaling), drawn from ``generator`` at each forward pass, so each
    step sees a slightly different network.

    Only models built of ``nn.Conv2d`` modules are touched (dlib-resnet's PyTorch port); a model
    run by the ONNX interpreter (MobileFaceNet) has no per-layer modules and is left as it is.
    ``with ConvDropout(models, p, gen) as n:`` gives the number of layers hooked.
    """

    def __init__(self, models: list, p: float, generator: torch.Generator):
        self.models, self.p, self.generator, self.handles = list(models), float(p), generator, []

    def _hook(self, module, inputs, out):
        keep = (torch.rand(out.shape, generator=self.generator) >= self.p).to(out.device, out.dtype)
        return out * keep / (1 - self.p)

    def __enter__(self) -> int:
        if self.p > 0:
            for m in self.models:
                for layer in m.modules():
                    if isinstance(layer, torch.nn.Conv2d):
                        self.handles.append(layer.register_forward_hook(self._hook))
        return len(self.handles)

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def device_of(surrogates: list) -> torch.device:
    """The one device all surrogates sit on (an optimisation runs there)."""
    devices = {module_device(s) for s in surrogates}
    if len(devices) != 1:
        raise ValueError(f"All surrogates must be on one device, found {sorted(map(str, devices))}.")
    return devices.pop()


__all__ = ["similarity", "project", "sign_step", "BudgetSpace", "YCBCR_FROM_RGB", "mean_magnitude", "unit_scale",
           "gaussian_smooth", "elastic_warp", "resize_pad", "ConvDropout", "FeatureDisruption", "device_of"]
