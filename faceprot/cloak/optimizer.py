"""The universal cloak optimiser (FaceCloak stage 2), one readable object.

Given V aligned views of one person, it finds ONE perturbation for all of them:

    minimise  L(delta) = mean over views v and surrogates m of
                 cos(e_m(T(x_v + delta)), near_m) - cos(e_m(T(x_v + delta)), far_m)
                 + self_weight * cos(e_m(T(x_v + delta)), person_m)
    with      delta = Pi(A * P),   |delta| <= budget (per pixel)

(with ``budget="perceptual"``, P, Pi and the budget live in luminance/chroma coordinates,
delta = M^-1 Pi(A * P) with M the YCbCr transform; see :mod:`faceprot.cloak.perceptual`)

where P is updated by sign-gradient PGD (its gradient optionally Gaussian-smoothed and mirrored,
the views jittered by a smooth random warp at each step, optionally resized and padded, the
surrogates optionally thinned by dropout; see :class:`CloakConfig`), A is the learnable attention, Pi clips to the per-pixel
budget, e_m is surrogate m's embedding, near/far are the anchors, person_m the person's clean
embedding (mean over views), and T is the real-life chain (alignment jitter, paste-back
resampling, 8-bit rounding, JPEG, downscaling) drawn afresh at every step (expectation over
transformations). All views go through in one batch per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..attack import (BudgetSpace, ConvDropout, FeatureDisruption, device_of, elastic_warp, gaussian_smooth,
                      mean_magnitude, project, resize_pad, sign_step, similarity, unit_scale)
from ..eot import RealLifeChain
from .anchors import Anchors
from .focus import LearnableAttention
from .perceptual import SPACE as PERCEPTUAL_SPACE
from .perceptual import PerceptualBudget


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
    # the person. Measured on 20 LFW people (v1's medium box, now ``paper``; both surrogates; BENCHMARKS.md "Tuning"):
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
    # Transfer to recognizers the mask never saw (issue 16 item 2), each off by default and measured
    # leave-one-out on the tuning split (BENCHMARKS.md, "Cloak v2: tuning-split measurements").
    # TI-FGSM's translation-invariant gradient is grad_smooth_sigma above (TI uses a wider kernel).
    #: input diversity (DI-FGSM): at each step each view, with this probability, is shrunk to a
    #: random size in [diversity_min_scale, 1] of the canonical side and zero-padded back at a random
    #: offset before the surrogates see it (0 = off)
    input_diversity: float = 0.0
    diversity_min_scale: float = 0.9
    #: model augmentation: dropout with this probability on every convolution output of the
    #: surrogates built of torch modules (dlib-resnet; not MobileFaceNet's ONNX graph), a fresh
    #: mask at each step (Ghost Networks' dropout erosion; 0 = off)
    model_dropout: float = 0.0
    #: intermediate-feature loss (Feature Disruptive Attack): weight of
    #: :class:`~faceprot.attack.FeatureDisruption`'s term on dlib-resnet's middle residual unit,
    #: added to the loss (0 = off)
    feature_weight: float = 0.0
    #: flatness (PGN, Ge et al. NeurIPS 2023, "Boosting adversarial transferability by achieving
    #: flat local maxima"): the share of the step's gradient taken ``flat_step`` ([0, 1] units,
    #: each view's gradient scaled to unit mean magnitude) further up the loss, where a sharp
    #: optimum's gradient turns; one extra gradient per step (0 = off)
    flat_weight: float = 0.0
    flat_step: float = 2 / 255
    max_high_fraction: float = 0.30
    use_stickers: bool = True
    use_high_pass: bool = True
    use_attention: bool = True
    use_anchors: bool = True
    use_eot: bool = True
    #: which budget: "box", the paper's L-inf box in RGB (eps, eps_high on stickers and high-pass;
    #: the "paper" preset); or "perceptual", a luminance/chroma box scaled by texture, low in the
    #: eyes (cloak v2, issue 16: low, medium and high; the fields below, see
    #: :class:`~faceprot.cloak.perceptual.PerceptualBudget`, where their defaults are explained). eps, eps_high, the stickers and high-pass apply to
    #: "box" only; alpha then only sets attention's step.
    budget: str = "box"
    luma_flat: float = PerceptualBudget.luma_flat
    luma_texture: float = PerceptualBudget.luma_texture
    chroma_ratio: float = PerceptualBudget.chroma_ratio
    eye_luma: float = PerceptualBudget.eye_luma
    eye_chroma: float = PerceptualBudget.eye_chroma
    texture_sigma: float = PerceptualBudget.texture_sigma
    texture_percentile: float = PerceptualBudget.texture_percentile
    eye_dilate: int = PerceptualBudget.eye_dilate
    step_fraction: float = PerceptualBudget.step_fraction
    texture_detail: float = PerceptualBudget.texture_detail
    head_margin: float = PerceptualBudget.head_margin

    def __post_init__(self):
        if self.budget not in ("box", "perceptual"):
            raise ValueError(f"budget must be 'box' or 'perceptual', got {self.budget!r}")

    def to_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}

    def perceptual_budget(self) -> PerceptualBudget | None:
        """The perceptual budget's rule, or None for the paper's box."""
        if self.budget != "perceptual":
            return None
        return PerceptualBudget(**{k: getattr(self, k) for k in PerceptualBudget().to_dict()})

    def space(self) -> BudgetSpace:
        """The coordinates the budget and P live in."""
        return BudgetSpace(PERCEPTUAL_SPACE if self.budget == "perceptual" else "rgb")

    def step(self, budget: torch.Tensor) -> float | torch.Tensor:
        """The PGD step: alpha (the box), or step_fraction of each pixel's budget (perceptual)."""
        return self.alpha if self.budget == "box" else budget * self.step_fraction


@dataclass
class CloakResult:
    delta: torch.Tensor  # (3, 256, 256) Pi(A * P), [0, 1] units
    attention: np.ndarray  # (256, 256) in [0, 1]
    losses: list[float] = field(default_factory=list)


def cloak_loss(model, emb: torch.Tensor, near: torch.Tensor | None, far: torch.Tensor | None,
               person: torch.Tensor, self_weight: float) -> torch.Tensor:
    """Per-sample loss (B,) for one surrogate; anchors may be None (dodging only)."""
    loss = self_weight * similarity(model, emb, person)
    if near is not None:
        loss = loss + similarity(model, emb, near) - similarity(model, emb, far)
    return loss


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

    def _view_gradient(self, pre: torch.Tensor, anchors: Anchors | None, person: dict[str, torch.Tensor],
                       gen: torch.Generator) -> tuple[torch.Tensor, float]:
        """The loss's gradient with respect to the protected views ``pre`` (V, 3, S, S) after the
        real-life chain and input diversity, each (surrogate, view) pair's scaled to unit mean
        magnitude and the surrogates' weighted and summed; and the mean loss."""
        cfg = self.config
        dev = pre.device
        leaf = pre.requires_grad_(True)
        x = resize_pad(self.chain(leaf, generator=gen), cfg.input_diversity, cfg.diversity_min_scale, gen)
        # Each (surrogate, view) pair gets an equal say: its gradient is scaled to unit mean
        # magnitude before summing, so neither one model nor a few easy views steer the
        # universal perturbation (views whose loss is already low would otherwise fade out).
        g_views = torch.zeros_like(leaf)
        total = 0.0
        for k, s in enumerate(self.surrogates):
            near = anchors.near[s.name].to(dev) if anchors is not None else None
            far = anchors.far[s.name].to(dev) if anchors is not None else None
            with ConvDropout([s], cfg.model_dropout, gen), FeatureDisruption([s], cfg.feature_weight > 0) as fda:
                emb = s(x)
                extra = fda.loss()
            loss = cloak_loss(s, emb, near, far, person[s.name], cfg.self_weight)
            if extra is not None:
                loss = loss + cfg.feature_weight * extra
            (g,) = torch.autograd.grad(loss.sum(), leaf, retain_graph=k < len(self.surrogates) - 1)
            w = float(cfg.surrogate_weights.get(s.name, 1.0))
            g_views += w * g / mean_magnitude(g, per_item=True)
            total += float(loss.detach().mean()) / len(self.surrogates)
        return g_views, total

    def __call__(self, views: torch.Tensor, budget: torch.Tensor, anchors: Anchors | None,
                 person: dict[str, torch.Tensor], seed: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> CloakResult:
        """Optimise the universal perturbation.

        Args:
            views: (V, 3, 256, 256) canonical views in [0, 1].
            budget: (1, 256, 256) per-pixel L-inf budget in RGB, [0, 1] units; with the
                perceptual budget, (3, 256, 256) for Y, Cb, Cr.
            anchors: near/far anchors, or None to only push away from the person.
            person: per surrogate name, (D,) clean embedding.
            seed: seeds the real-life chain's random draws.
            progress: called as progress(iteration, iterations).
        """
        cfg = self.config
        dev = device_of(self.surrogates)
        views, budget = views.to(dev), budget.to(dev)
        space, step = cfg.space(), cfg.step(budget)
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
            delta = space.to_rgb(project(attention.a * p, budget))  # Pi(A * P), in RGB
            faces = elastic_warp(views, cfg.view_warp_px, gen, cfg.view_warp_grid)  # views itself at 0
            pre = (faces + delta).clamp(0, 1)
            g_views, total = self._view_gradient(pre.detach(), anchors if use_anchors else None, person, gen)
            if cfg.flat_weight > 0:
                # PGN (Ge et al., NeurIPS 2023): the gradient a step further up the loss, mixed in,
                # approximates a penalty on the gradient's norm, steering toward a flat optimum.
                ahead = (pre.detach() + cfg.flat_step * g_views / mean_magnitude(g_views, per_item=True)).clamp(0, 1)
                g_ahead, _ = self._view_gradient(ahead, anchors if use_anchors else None, person, gen)
                g_views = (1 - cfg.flat_weight) * g_views + cfg.flat_weight * g_ahead
            grads = torch.autograd.grad(pre, wrt, grad_outputs=g_views)
            with torch.no_grad():
                g_p = gaussian_smooth(grads[0], cfg.grad_smooth_sigma)
                if cfg.mirror_gradient:  # the template is symmetric about the flip axis to 0.2 px
                    g_p = g_p + g_p.flip(-1)
                momentum.mul_(cfg.momentum).add_(unit_scale(g_p))
            sign_step(p, momentum, step, budget * cfg.p_bound)
            if cfg.use_attention:
                attention.step(grads[1])
            losses.append(total)
            if progress:
                progress(it + 1, cfg.iterations)
        with torch.no_grad():
            delta = space.to_rgb(project(attention.a * p, budget))[0]
        return CloakResult(delta.detach().cpu(), attention.map(), losses)


def refine_delta(x: torch.Tensor, delta: torch.Tensor, budget: torch.Tensor, surrogates: list,
                 steps: int, alpha: float | torch.Tensor, seed: int = 0, strip_weight: float = 1.0,
                 space: BudgetSpace | None = None) -> torch.Tensor:
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
        delta: (3, 256, 256) the mask in RGB; budget: (1, 256, 256), or (3, 256, 256) in ``space``.
        alpha: the step, or a per-pixel step map (3, 256, 256) in ``space``.
        space: the budget's coordinates (default RGB, the paper's box); the steps and the
            projection happen there.
    Returns:
        (3, 256, 256) refined delta in RGB on the CPU, within the budget in ``space``.
    """
    dev = device_of(surrogates)
    space = space or BudgetSpace("rgb")
    x, delta, budget = x.to(dev), delta.to(dev), budget.to(dev)
    alpha = alpha.to(dev) if isinstance(alpha, torch.Tensor) else alpha
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        clean = {s.name: s(x)[0] for s in surrogates}
        start = space.from_rgb(delta) + (torch.rand(delta.shape, generator=gen) * 2 - 1).to(dev) * alpha
        d = project(start, budget)[None].clone()
    d.requires_grad_(True)
    for _ in range(steps):
        g = torch.zeros_like(d)
        for s in surrogates:  # a fresh graph per surrogate (each grad call frees its graph)
            seen = (x + space.to_rgb(d)).clamp(0, 1)
            if strip_weight > 0:  # the photo as posted, and as left after the mask is subtracted
                sims = similarity(s, s(torch.cat([seen, (seen - delta).clamp(0, 1)])), clean[s.name])
                loss = sims[0] + strip_weight * sims[1]
            else:
                loss = similarity(s, s(seen), clean[s.name]).mean()
            g += unit_scale(torch.autograd.grad(loss, d)[0])
        sign_step(d, g, alpha, budget)
    return space.to_rgb(d.detach()[0]).cpu()
