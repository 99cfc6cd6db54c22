"""The universal cloak optimiser (FaceCloak stage 2), one readable object.

Given V aligned views of one person, it finds ONE perturbation for all of them:

    minimise  L(delta) = mean over views v and surrogates m of
                 cos(e_m(T(x_v + delta)), near_m) - cos(e_m(T(x_v + delta)), far_m)
                 + self_weight * cos(e_m(T(x_v + delta)), person_m)
    with      delta = Pi(A * P),   |delta| <= budget (per pixel)

where P is updated by sign-gradient PGD (its gradient optionally Gaussian-smoothed and mirrored,
the views jittered by a smooth random warp at each step; see :class:`CloakConfig`), A is the learnable attention, Pi clips to the per-pixel
budget, e_m is surrogate m's embedding, near/far are the anchors, person_m the person's clean
embedding (mean over views), and T is the real-life chain (alignment jitter, paste-back
resampling, 8-bit rounding, JPEG, downscaling) drawn afresh at every step (expectation over
transformations). All views go through in one batch per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..recognizers.base import module_device
from .anchors import Anchors
from .eot import RealLifeChain
from .focus import LearnableAttention


@dataclass
class CloakConfig:
    """Hyper-parameters in the paper's terms (defaults: the paper's, FACTS.md section 6)."""

    eps: float = 8 / 255  # base L-inf budget
    eps_high: float = 16 / 255  # budget inside stickers and high-pass
    alpha: float = 2 / 255  # PGD step
    iterations: int = 10
    attention_lr: float = 10.0
    self_weight: float = 6.0  # weight of the push away from the person's own clean embedding
    momentum: float = 0.0  # MI-FGSM-style momentum on the normalised gradient (0 = plain PGD)
    # Beyond the paper, for a mask that carries over from the selfie's views to other photos of
    # the person. Measured on 20 LFW people (medium, both surrogates; BENCHMARKS.md "Tuning"):
    # with the ensemble weight below, they raised top-1 PSR from 79 / 79 / 46% (dlib-cpp /
    # dlib-resnet / mobilefacenet) to 88 / 92 / 76% at 1.0 dB lower face PSNR, and on 20
    # held-out people from 73 / 73 / 42% to 80 / 89 / 76%.
    #: P is kept within p_bound * budget. Pi clips A * P to the budget, so above 1 attention
    #: re-weights the perturbation instead of only shrinking it.
    p_bound: float = 2.0
    #: TI-FGSM-style Gaussian smoothing of P's gradient (canonical px; 0 = off): a smoother mask
    #: survives the shift between the selfie's alignment and another photo's.
    grad_smooth_sigma: float = 1.0
    #: average P's gradient with its mirror image (the canonical template is left-right
    #: symmetric), like the mirrored views, so the mask works on either side of the face.
    mirror_gradient: bool = True
    #: non-rigid jitter of the views at every step (canonical px, per-axis std of a smooth random
    #: displacement field; 0 = off): another photo of the person, aligned on five points, has its
    #: eyes, nose and mouth a few pixels from the selfie's (median 3.4-5.7 px on LFW), so a mask tied
    #: to the selfie's exact geometry misses them. The largest single gain of the tuning study.
    view_warp_px: float = 4.5
    #: nodes per side of that field's lattice (5: one every 64 canonical px)
    view_warp_grid: int = 5
    #: per-surrogate weight in the ensemble (1 for a name not listed). mobilefacenet, the
    #: surrogate with the least slack, gets 1.5: with the warp it raised its top-1 PSR by 1.3 and
    #: 3.8 points on two 20-person slices for 0-2.6 points of dlib's (BENCHMARKS.md, round 3).
    surrogate_weights: dict = field(default_factory=lambda: {"mobilefacenet": 1.5})
    max_high_fraction: float = 0.30
    use_stickers: bool = True
    use_high_pass: bool = True
    use_attention: bool = True
    use_anchors: bool = True
    use_eot: bool = True

    def to_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


@dataclass
class CloakResult:
    delta: torch.Tensor  # (3, 256, 256) Pi(A * P), [0, 1] units
    attention: np.ndarray  # (256, 256) in [0, 1]
    losses: list[float] = field(default_factory=list)


def similarity(model, emb: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Higher-is-more-alike, per sample (B,), in units where the model's threshold is about 1 apart
    from 0: cosine for cosine models, -L2 / threshold for L2 models (dlib's descriptors are not
    centred, so their cosines all sit near 1 and carry little gradient)."""
    if model.metric == "cosine":
        return F.cosine_similarity(emb, ref[None], dim=-1)
    return -torch.linalg.vector_norm(emb - ref[None], dim=-1) / model.threshold.value


def cloak_loss(model, emb: torch.Tensor, near: torch.Tensor | None, far: torch.Tensor | None,
               person: torch.Tensor, self_weight: float) -> torch.Tensor:
    """Per-sample loss (B,) for one surrogate; anchors may be None (dodging only)."""
    loss = self_weight * similarity(model, emb, person)
    if near is not None:
        loss = loss + similarity(model, emb, near) - similarity(model, emb, far)
    return loss


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


def _unit(g: torch.Tensor) -> torch.Tensor:
    """A gradient scaled to mean |g| = 1, so every surrogate has an equal say in the sign step."""
    return g / (g.abs().mean() + 1e-20)


def _device_of(surrogates: list) -> torch.device:
    """The one device all surrogates sit on (the optimisation runs there)."""
    devices = {module_device(s) for s in surrogates}
    if len(devices) != 1:
        raise ValueError(f"All surrogates must be on one device, found {sorted(map(str, devices))}.")
    return devices.pop()


class UniversalCloak:
    """Sign-gradient PGD on one perturbation over all views, with learnable attention and EOT.

    It runs on the surrogates' device (load them with ``load_surrogate(name, device)``); inputs may
    be anywhere and the result comes back on the CPU. Random draws come from a CPU generator, so a
    seed gives the same views, warps and real-life chain on a GPU as on a CPU; the GPU's float
    sums differ in the last bits, which sign steps can amplify, so the masks are alike, not equal.
    """

    def __init__(self, surrogates: list, config: CloakConfig | None = None):
        self.surrogates = list(surrogates)
        self.config = config or CloakConfig()
        self.chain = RealLifeChain(enabled=self.config.use_eot)

    @torch.no_grad()
    def person_embeddings(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per surrogate, the mean clean embedding over views (the person's identity), on the CPU."""
        return {s.name: s(views.to(s.device)).mean(0).cpu() for s in self.surrogates}

    def __call__(self, views: torch.Tensor, budget: torch.Tensor, anchors: Anchors | None,
                 person: dict[str, torch.Tensor], seed: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> CloakResult:
        """Optimise the universal perturbation.

        Args:
            views: (V, 3, 256, 256) canonical views in [0, 1].
            budget: (1, 256, 256) per-pixel L-inf budget, [0, 1] units.
            anchors: near/far anchors, or None to only push away from the person.
            person: per surrogate name, (D,) clean embedding.
            seed: seeds the real-life chain's random draws.
            progress: called as progress(iteration, iterations).
        """
        cfg = self.config
        dev = _device_of(self.surrogates)
        views, budget = views.to(dev), budget.to(dev)
        person = {k: v.to(dev) for k, v in person.items()}
        gen = torch.Generator().manual_seed(seed)
        p = torch.zeros(1, *views.shape[1:], device=dev, requires_grad=True)
        attention = LearnableAttention(views.shape[-1], lr=cfg.attention_lr, alpha=cfg.alpha,
                                       enabled=cfg.use_attention, device=dev)
        use_anchors = cfg.use_anchors and anchors is not None
        wrt = [p, attention.a] if cfg.use_attention else [p]
        momentum = torch.zeros_like(p)
        losses = []
        for it in range(cfg.iterations):
            delta = torch.maximum(torch.minimum(attention.a * p, budget), -budget)  # Pi(A * P)
            faces = elastic_warp(views, cfg.view_warp_px, gen, cfg.view_warp_grid)  # views itself at 0
            pre = (faces + delta).clamp(0, 1)
            leaf = pre.detach().requires_grad_(True)
            x = self.chain(leaf, generator=gen)
            # Each (surrogate, view) pair gets an equal say: its gradient is scaled to unit mean
            # magnitude before summing, so neither one model nor a few easy views steer the
            # universal perturbation (views whose loss is already low would otherwise fade out).
            g_views = torch.zeros_like(leaf)
            total = 0.0
            for k, s in enumerate(self.surrogates):
                near = anchors.near[s.name].to(dev) if use_anchors else None
                far = anchors.far[s.name].to(dev) if use_anchors else None
                loss = cloak_loss(s, s(x), near, far, person[s.name], cfg.self_weight)
                (g,) = torch.autograd.grad(loss.sum(), leaf, retain_graph=k < len(self.surrogates) - 1)
                w = float(cfg.surrogate_weights.get(s.name, 1.0))
                g_views += w * g / (g.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-20)
                total += float(loss.detach().mean()) / len(self.surrogates)
            grads = torch.autograd.grad(pre, wrt, grad_outputs=g_views)
            with torch.no_grad():
                g_p = gaussian_smooth(grads[0], cfg.grad_smooth_sigma)
                if cfg.mirror_gradient:  # the template is symmetric about the flip axis to 0.2 px
                    g_p = g_p + g_p.flip(-1)
                momentum.mul_(cfg.momentum).add_(_unit(g_p))
                p -= cfg.alpha * momentum.sign()
                bound = budget * cfg.p_bound
                p.copy_(torch.maximum(torch.minimum(p, bound), -bound))
            if cfg.use_attention:
                attention.step(grads[1])
            losses.append(total)
            if progress:
                progress(it + 1, cfg.iterations)
        with torch.no_grad():
            delta = torch.maximum(torch.minimum(attention.a * p, budget), -budget)[0]
        return CloakResult(delta.detach().cpu(), attention.map(), losses)


def refine_delta(x: torch.Tensor, delta: torch.Tensor, budget: torch.Tensor, surrogates: list,
                 steps: int, alpha: float, seed: int = 0, strip_weight: float = 1.0) -> torch.Tensor:
    """Per-photo refinement: ``steps`` sign-PGD steps from the mask, inside its budget.

    Pushes the photo's embedding away from its own clean embedding on every surrogate, from a
    random start around the mask, so two protected photos no longer carry the same delta.

    With ``strip_weight`` > 0 (the default) it also protects the photo as someone who strips
    the mask would leave it: whoever has one clean/protected pair of the person can estimate the
    universal mask and subtract it from every other protected photo. The loss adds, with that
    weight, the similarity of ``x + d - delta`` (the refined photo with the mask subtracted) to
    the clean embedding, so the refined delta keeps protecting after the subtraction.

    Runs on the surrogates' device; inputs may be anywhere.

    Args:
        x: (1, 3, 256, 256) the clean canonical face of this photo, [0, 1].
        delta: (3, 256, 256) the mask; budget: (1, 256, 256).
    Returns:
        (3, 256, 256) refined delta on the CPU, |delta| <= budget.
    """
    dev = _device_of(surrogates)
    x, delta, budget = x.to(dev), delta.to(dev), budget.to(dev)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        clean = {s.name: s(x)[0] for s in surrogates}
        start = delta + (torch.rand(delta.shape, generator=gen) * 2 - 1).to(dev) * alpha
        d = torch.maximum(torch.minimum(start, budget), -budget)[None].clone()
    d.requires_grad_(True)
    for _ in range(steps):
        g = torch.zeros_like(d)
        for s in surrogates:  # a fresh graph per surrogate (each grad call frees its graph)
            seen = (x + d).clamp(0, 1)
            if strip_weight > 0:  # the photo as posted, and as left after the mask is subtracted
                sims = similarity(s, s(torch.cat([seen, (seen - delta).clamp(0, 1)])), clean[s.name])
                loss = sims[0] + strip_weight * sims[1]
            else:
                loss = similarity(s, s(seen), clean[s.name]).mean()
            g += _unit(torch.autograd.grad(loss, d)[0])
        with torch.no_grad():
            d -= alpha * g.sign()
            d.copy_(torch.maximum(torch.minimum(d, budget), -budget))
    return d.detach()[0].cpu()
