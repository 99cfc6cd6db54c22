"""The warp engine of the emotion disguise (issue 15, item 4): a face's expression changed by a
landmark warp, and its identity hidden by the warp and a small additive perturbation.

    photo -> faces (:func:`faceprot.protect.locate`) -> canonical face and its 68 points
    -> the emotion's expression space (a few landmark directions) -> :class:`EmotionDisguise`
    (the dual-objective loop) -> paste back by :func:`faceprot.protect.protect_faces` with the
    disguise's paste: the warp resamples the photo at its own resolution (:func:`paste_warp`),
    then the additive part is added (:func:`faceprot.canonical.paste_back`) -> photo

The two objectives and the two variables (MAP, FACTS.md section 7, on a warp instead of a
diffusion model):

* the **warp coefficients** ``c`` (K numbers): the displacements of the 68 landmarks are
  ``d = limit(sum_k c_k B_k)``, with ``B_k`` the emotion's basis (:func:`expression_basis`) and
  ``limit`` the hard limits (:func:`~.warp.limit_displacements`);
* the **additive perturbation** ``a`` (3 x 256 x 256), ``|a| <= eps`` on the face
  (:func:`face_region`: jaw, brows and forehead, feathered) and 0 off it.

    warp_only = W(x; d(c))            final = clip(warp_only + a, 0, 1)
    L_E(c)    = -log p_emotion(warp_only) + w_t |d - T|^2 / |T|^2 + w_l laplacian(s + d, s)
    L_A(c, a) = mean over surrogates of sim(T(final), clean)       (dodging)
             or mean of sim(T(final), clean) - sim(T(final), target)  (impersonation)

with T one random draw of the real-life chain per step (:class:`faceprot.eot.RealLifeChain`).

Expression acts through the warp only: ``L_E`` reads the warp-only face, so the additive noise can
never carry the expression. Identity acts through both. On ``c`` the gradients of ``L_A`` and
``L_E`` are combined by :class:`~.projection.GradientProjector` (where they share a variable)
and the result is an Adam step; ``a`` takes a signed PGD step on ``L_A``'s gradient alone and is
projected onto its budget.

Conventions: canonical faces are ``(B, 3, 256, 256)`` float in [0, 1] (:mod:`faceprot.canonical`);
landmarks and displacements are canonical pixels, ``(B, 68, 2)``; the expression space's units are
inter-ocular distances (IOD) in the eye-line frame (:mod:`.warp`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from ..attack import device_of, project, sign_step, similarity, unit_scale
from ..canonical import align, paste_back, region_weight
from ..eot import RealLifeChain
from ..errors import FaceprotError, NoFaceError
from ..expression import load_expression_model
from ..faces import Face, Selection, select_faces
from ..io import Picture, encode_png
from ..protect import Located, Protected, as_picture, locate, protect_faces
from ..recognizers import default_surrogates, load_surrogate
from ..runtime import resolve_device
from .measure import EMOTION_RULES
from .projection import MODES, GradientProjector
from .smoothness import laplacian_loss
from .warp import (
    EMOTIONS, MOUTH, TEMPLATES, _mouth_follows, eye_centres, eye_frame, identity_grid,
    interocular_distance, jacobian_determinant, limit_displacements, sample, to_pixels, warp_grid,
)

Progress = Callable[[float, str], None]


# ------------------------------------------------------------------------------------------------
# Errors a user can cause
# ------------------------------------------------------------------------------------------------


class EmotionError(FaceprotError, ValueError):
    """An emotion the disguise does not know, or does not offer (yet)."""


class LandmarkError(NoFaceError):
    """A face was found, but its 68 landmarks are not usable for the warp."""


#: The emotions the disguise offers: those with an expression template that the landmark measure
#: can also confirm on the output (issue 15: "offer only emotions that pass acceptance").
OFFERED: tuple[str, ...] = tuple(e for e in EMOTIONS if e in EMOTION_RULES and EMOTION_RULES[e].supported)


def check_emotion(emotion: str) -> str:
    """``emotion`` if the disguise offers it; else an :class:`EmotionError` that says which are."""
    offered = ", ".join(OFFERED)
    if emotion not in EMOTIONS:
        raise EmotionError(f"Unknown emotion {emotion!r}. The emotion disguise offers: {offered}.")
    if emotion not in OFFERED:
        why = EMOTION_RULES[emotion].why if emotion in EMOTION_RULES else "no measure can confirm it"
        raise EmotionError(f"The emotion disguise does not offer {emotion!r} yet: {why}. "
                           f"It offers: {offered}.")
    return emotion


#: A canonical face's inter-ocular distance is about 70 px (the ArcFace template x 2); landmarks
#: whose eyes are closer than this, or not finite, did not find the face.
MIN_CANONICAL_IOD = 30.0


def check_landmarks(face: Face) -> np.ndarray:
    """The face's 68 canonical landmarks (68, 2) float64, or a :class:`LandmarkError`."""
    pts = face.canonical_landmarks
    if not np.isfinite(pts).all():
        raise LandmarkError(f"The landmarks of the {face.describe()} could not be found.")
    iod = float(interocular_distance(torch.from_numpy(pts)))
    mouth_inside = ((pts[48:68] >= 0) & (pts[48:68] <= 255)).all()
    if iod < MIN_CANONICAL_IOD or not mouth_inside:
        raise LandmarkError(f"The landmarks of the {face.describe()} could not be found reliably (the eyes "
                            "or the mouth are not where a face's are); use a clearer, frontal photo.")
    return pts


# ------------------------------------------------------------------------------------------------
# The expression space
# ------------------------------------------------------------------------------------------------

#: The directions of an emotion's expression space, in order. Each is a (68, 2) displacement field
#: in IOD units (eye-line frame) built from the emotion's action-unit template (:data:`.warp.TEMPLATES`):
#:
#: * ``template``: the whole template (happy: AU12 lip-corner puller + AU6 cheek raiser), the main
#:   direction; its coefficient starts at 1, the others at 0;
#: * ``left corner`` / ``right corner``: the template's mouth-corner pull (up and out, falling off
#:   as t^2 towards the mouth's middle) on the image-left / image-right half of the mouth alone, so
#:   the smile can be stronger on one side, as real smiles often are;
#: * ``upper face``: the template's points outside the mouth alone (happy: cheeks, nostril wings,
#:   lower lids pushed up; AU6 without AU12);
#: * ``mouth width``: the corners' outward pull alone (no lift): a wider or narrower mouth.
#:
#: Every direction moves whole contours smoothly, so any combination stays a face's expression;
#: free per-landmark displacements would score on the classifier and look like caricatures (issue
#: 15). A direction that is zero for an emotion (no mouth in surprise) is left out.
DIRECTIONS = ("template", "left corner", "right corner", "upper face", "mouth width")


def expression_basis(points68: torch.Tensor, emotion: str) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The emotion's expression space for one or more faces, in their canonical pixels.

    Args:
        points68: (B, 68, 2) landmarks, canonical pixels.
        emotion: a key of :data:`.warp.TEMPLATES`.
    Returns:
        ``(basis, names)``: basis (B, K, 68, 2) displacement directions in pixels (the IOD-unit
        directions scaled by each face's IOD and turned into its eye-line frame), and the K
        direction names (a subset of :data:`DIRECTIONS`, in that order). ``basis[:, 0]`` equals
        :func:`~.warp.template_displacements` of the face.
    """
    fixed, corners, centre_up = TEMPLATES[emotion]
    p = points68
    b = p.shape[0]
    frame = eye_frame(p)  # (B, 2, 2), columns = axes
    iod = interocular_distance(p)[:, None, None]
    in_frame = (p - eye_centres(p)[0][:, None]) @ frame / iod
    mouth_x = in_frame[:, MOUTH, 0]
    left_x, right_x = in_frame[:, 48:49, 0], in_frame[:, 54:55, 0]
    t = ((2 * mouth_x - left_x - right_x) / (right_x - left_x)).clamp(-1, 1)  # -1 at 48, 1 at 54

    def blank() -> torch.Tensor:
        return torch.zeros(b, 68, 2, dtype=p.dtype, device=p.device)

    upper = blank()
    upper[:] = torch.as_tensor(fixed, dtype=p.dtype, device=p.device)
    template = upper.clone()
    template[:, MOUTH] = _mouth_follows(in_frame, corners, centre_up)
    pull = _mouth_follows(in_frame, corners, 0.0)  # the corners' pull, zero at the mouth's middle
    left, right, width = blank(), blank(), blank()
    left[:, MOUTH] = pull * (t < 0)[..., None]
    right[:, MOUTH] = pull * (t > 0)[..., None]
    width[:, MOUTH] = _mouth_follows(in_frame, (corners[0], 0.0), 0.0)
    upper[:, MOUTH] = 0

    named = dict(zip(DIRECTIONS, (template, left, right, upper, width)))
    names = tuple(n for n, d in named.items() if bool(d.abs().amax() > 0))
    dirs = torch.stack([named[n] for n in names], 1)  # (B, K, 68, 2), frame, IOD units
    pixels = iod[:, None] * (dirs @ frame.transpose(-1, -2)[:, None])
    return pixels, names


# ------------------------------------------------------------------------------------------------
# Where the additive part may go
# ------------------------------------------------------------------------------------------------

#: The forehead is included by lifting the brows (17-26) this many IODs up the face, and the
#: outline is scaled about its centre by 1 + REGION_GROW. MobileFaceNet reads the whole ArcFace
#: crop, beyond the landmarks' hull: on 3 faces (2 LFW, 1 real-size; 40 steps, medium) its
#: similarity after dodging was 0.28-0.59 with the hull and the brows lifted 0.35 IOD, 0.17-0.45
#: with these (and 0.05-0.38 with its weight below); dlib-resnet was dodged in all (-1.3 to -1.8).
FOREHEAD_IOD = 0.6
REGION_GROW = 0.12
#: The face region's edge is feathered by a Gaussian of this many canonical pixels.
REGION_FEATHER = 3.0


def face_region(points68: np.ndarray, size: int = 256) -> np.ndarray:
    """(size, size) float32 in [0, 1]: where the additive perturbation may go, the face itself.

    The convex hull of the jaw (0-16) and the brows lifted by :data:`FOREHEAD_IOD` (the forehead),
    feathered by :data:`REGION_FEATHER` px. Outside it the budget is 0: 4/255 of structured noise
    shows on a flat background (the first run's artifact: wavy lines on the white wall beside an
    LFW face), and the recognizers read the face, not the wall.

    Args:
        points68: (68, 2) canonical landmarks, pixels.
    """
    p = np.asarray(points68, dtype=np.float64)
    iod = float(interocular_distance(torch.from_numpy(p)))
    up = -eye_frame(torch.from_numpy(p))[:, 1].numpy()  # the frame's y axis points down the face
    outline = np.concatenate([p[0:17], p[17:27] + FOREHEAD_IOD * iod * up])
    centre = outline.mean(0)
    outline = centre + (1 + REGION_GROW) * (outline - centre)
    mask = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(outline).astype(np.int32)), 1.0)
    return cv2.GaussianBlur(mask, (0, 0), REGION_FEATHER)


# ------------------------------------------------------------------------------------------------
# The optimiser
# ------------------------------------------------------------------------------------------------

#: The additive perturbation's L-inf budget per strength (issue 15, item 4: 4/255 by default,
#: 8/255 at most). The feasibility probe dodged dlib on 97-100% of faces with sign-PGD at 4/255.
STRENGTHS: dict[str, float] = {"low": 2 / 255, "medium": 4 / 255, "high": 8 / 255}
#: The hard cap on the additive perturbation, whatever is asked (issue 15, item 4).
MAX_EPS = 8 / 255


@dataclass
class DisguiseConfig:
    """Hyper-parameters of :class:`EmotionDisguise`, in MAP's terms where it has them.

    eps: L-inf budget of the additive perturbation a (<= :data:`MAX_EPS`).
    alpha: its signed PGD step (default eps / 4, the cloak presets' ratio).
    steps: iterations of the joint loop (the feasibility probe: 40-60; one step is one forward and
        backward pass of every model, about 0.15 s a face on one CPU thread).
    lr: Adam's step on the warp coefficients (with 40 steps they can move about 2 from the start).
    template_weight: w_t, on the closeness |d - T|^2 / |T|^2 of the displacements to the template
        T (0 at the start, 1 when d is twice T or zero).
    laplacian_weight: w_l, on MAP's Laplacian smoothness loss (in IOD^2; README: 100 kept a pulled
        brow whole on a real face).
    identity_weight: scales L_A on both variables (0: the expression edit alone, and a never moves).
    projection: how the two gradients on c are combined: "gradvac" (MAP), "pcgrad" or "sum".
    ema: GradVac's beta.
    random_start: start a from uniform noise in [-alpha, alpha] (drawn from the seed), so two
        seeds give two different perturbations; otherwise from zero.
    eot: the identity loss reads the final face through one random draw per step of
        :class:`faceprot.eot.RealLifeChain` (paste-back at about this photo's own scale, 8 bits,
        sometimes a downscale and a JPEG re-save, re-alignment jitter), as the cloak does. Without
        it the perturbation did not survive the paste-back: on the example photo obama-1.jpg
        dlib-resnet's distance to the clean face was 0.81 in canonical space (dodged) and 0.49 on
        the re-detected output photo (still matched, threshold 0.6).
    keep_weight: the additive part's say in keeping the warp's expression: wherever the
        objective's classifier reads the emotion less on the final face than on the warp-only
        face, its gradient joins a's sign step with this weight (unit-scaled, as a surrogate's).
        A hinge on the warp-only face's own level: it pushes only while the expression is below
        what the warp made, so the objective never rewards the noise for adding to it (the noise
        may still raise it as a side effect of the identity loss: p(happy) 0.72 on the warp-only
        face and 0.81 on the final one of obama2.jpg). Without it, noise for identity alone took it away: the
        `expression` model's p(happy) fell from 0.54 on the warp-only face to 0.14 on the final
        one (Albert_Costa, LFW), as a 2/255 perturbation flips that model on most faces.
    warp: False leaves the face's geometry alone (the coefficients stay 0 and no expression loss
        is computed): the additive perturbation alone, the benchmark's "perturbation only" row.
        ``eps=0`` is the other ablation, "warp only".
    surrogate_weights: each surrogate's say in a's sign step (1 for a name not listed; its gradient
        is unit-scaled first, as in the cloak). MobileFaceNet, the harder one to dodge here, gets
        1.5, the cloak's weight: on the 3 faces of :data:`FOREHEAD_IOD` it lowered its similarity
        by 0.07-0.12 for 0.07-0.29 of dlib-resnet's (still dodged).
    """

    eps: float = STRENGTHS["medium"]
    alpha: float | None = None
    steps: int = 40
    lr: float = 0.05
    template_weight: float = 1.0
    laplacian_weight: float = 100.0
    identity_weight: float = 1.0
    projection: str = "gradvac"
    ema: float = 0.01
    random_start: bool = True
    warp: bool = True
    eot: bool = True
    keep_weight: float = 1.0
    surrogate_weights: dict = field(default_factory=lambda: {"mobilefacenet": 1.5})

    def __post_init__(self):
        if not 0 <= self.eps <= MAX_EPS + 1e-12:
            raise FaceprotError(f"The additive budget must be between 0 and 8/255, not {self.eps * 255:.2f}/255.")
        if self.projection not in MODES:
            raise FaceprotError(f"Unknown projection {self.projection!r}; choose {', '.join(MODES)}.")
        if self.steps < 0:
            raise FaceprotError(f"steps must be 0 or more, not {self.steps}.")
        if self.alpha is None:
            self.alpha = self.eps / 4


@dataclass
class FaceDisguise:
    """One face's disguise, in canonical space (tensors on the CPU).

    clean, warp_only, final: (3, S, S) in [0, 1].  points: (68, 2) the clean landmarks and
    displacements: (68, 2) their moves, canonical pixels.  coefficients: the expression space's
    coefficients by direction name.  max_move_iod: the largest landmark move in IOD (<= 0.12).
    min_det, max_det: the warp's Jacobian determinant's extremes (min > 0.3).  additive_linf:
    max |final - warp_only| (<= eps).  p_emotion: the objective's probability of the emotion on the
    clean, the warp-only and the final face.  similarity: per surrogate, the score (in
    :func:`faceprot.attack.similarity`'s units) to the reference (the clean face when dodging, the
    target when impersonating) of the warp-only and of the final face.  losses: per step, the
    losses and the projection's record.  seconds: the optimisation's time.
    """

    face: Face
    clean: torch.Tensor
    warp_only: torch.Tensor
    final: torch.Tensor
    points: torch.Tensor
    displacements: torch.Tensor
    coefficients: dict[str, float]
    max_move_iod: float
    min_det: float
    max_det: float
    additive_linf: float
    p_emotion: dict[str, float]
    similarity: dict[str, dict[str, float]]
    losses: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def additive(self) -> torch.Tensor:
        """(3, S, S) the additive part as applied: final - warp_only."""
        return self.final - self.warp_only


class EmotionDisguise:
    """The dual-objective loop on one canonical face: Adam on the warp coefficients (identity and
    expression gradients combined by projection), signed PGD on the additive perturbation
    (identity gradient only). See the module docstring for the losses.

    Args:
        surrogates: loaded recognizers (:func:`faceprot.recognizers.load_surrogate`), on one device.
        expression: the objective's expression model (``load_expression_model("expression")``) on
            the same device. Never the held-out judge.
        config: :class:`DisguiseConfig`.

    It runs on the surrogates' device; the result comes back on the CPU. Random draws come from a
    CPU generator seeded by the caller.
    """

    def __init__(self, surrogates: list, expression, config: DisguiseConfig | None = None):
        self.surrogates = list(surrogates)
        self.expression = expression
        self.config = config or DisguiseConfig()

    def __call__(self, x: torch.Tensor, points: torch.Tensor, emotion: str,
                 reference: dict[str, torch.Tensor], impersonate: bool = False, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None, scale: float | None = None,
                 away: dict[str, torch.Tensor] | None = None) -> dict:
        """Disguise one face.

        Args:
            x: (1, 3, S, S) the clean canonical face, [0, 1].
            points: (1, 68, 2) its landmarks, canonical pixels.
            emotion: a key of :data:`.warp.TEMPLATES`.
            reference: per surrogate name, (D,) the embedding to move away from (dodging: the
                clean face's) or towards (``impersonate=True``: the target's).
            seed: seeds the additive perturbation's random start.
            progress: called as progress(step, steps).
            away: with ``impersonate``, per surrogate the clean face's embedding, to move away
                from at the same time (L_A = sim(final, away) - sim(final, target)): a face that
                matches the target but still matches its owner does not hide anyone.
            scale: the photo's pixels per canonical pixel at this face (None: unknown), so that
                the real-life chain pastes back at about the photo's own scale (x0.8 to x1.25).
        Returns:
            a dict of :class:`FaceDisguise`'s fields other than ``face`` (all on the CPU).
        """
        cfg = self.config
        t0 = time.perf_counter()
        dev = device_of(self.surrogates)
        x, points = x.to(dev), points.to(dev, torch.float64)
        ref = {k: v.to(dev) for k, v in reference.items()}
        own = {k: v.to(dev) for k, v in away.items()} if (impersonate and away is not None) else None
        column = self.expression.index(emotion)
        basis, names = expression_basis(points, emotion)  # (1, K, 68, 2) float64
        template = basis[:, 0]
        template_norm2 = template.pow(2).sum()
        sign = -1.0 if impersonate else 1.0  # L_A = sign * mean similarity to the reference
        region = torch.from_numpy(face_region(points[0].cpu().numpy(), x.shape[-1])).to(dev, x.dtype)
        eps = cfg.eps * region[None, None]  # (1, 1, S, S) per-pixel budget: eps on the face, 0 off it

        coeffs = torch.zeros(len(names), dtype=torch.float64, device=dev)
        if cfg.warp:
            coeffs[0] = 1.0  # start from the template
        coeffs.requires_grad_(cfg.warp)
        gen = torch.Generator().manual_seed(seed)
        start = (torch.rand(x.shape, generator=gen, dtype=x.dtype) * 2 - 1) * cfg.alpha
        start = project(start.to(dev), eps) if cfg.random_start else torch.zeros_like(x)
        additive = start.requires_grad_(True)
        adam = torch.optim.Adam([coeffs], lr=cfg.lr)
        chain = RealLifeChain(enabled=cfg.eot, **({} if scale is None else {"paste_scale": (0.8 * scale, 1.25 * scale)}))
        projector = GradientProjector(cfg.projection, ema=cfg.ema)

        def displacements(c: torch.Tensor) -> torch.Tensor:
            wanted = (c[None, :, None, None] * basis).sum(1)
            return limit_displacements(points, wanted).displacements

        losses = []
        zero = torch.zeros((), dtype=torch.float64)
        for step in range(cfg.steps):
            if cfg.warp:
                d = displacements(coeffs)
                warp_only = sample(x, warp_grid(points, d))
                # expression: on the warp-only face, through the coefficients alone
                log_p = self.expression.log_probs(warp_only)[0, column]
                closeness = (d - template).pow(2).sum() / template_norm2
                smooth = laplacian_loss(points + d, points)
                loss_e = -log_p + cfg.template_weight * closeness + cfg.laplacian_weight * smooth
                (g_e,) = torch.autograd.grad(loss_e, coeffs, retain_graph=True)
            else:  # the perturbation alone: no geometry, no expression objective
                warp_only, log_p, closeness, smooth, loss_e = x, zero, zero, zero, zero
            # identity: on the final face, through both variables. Each surrogate's gradient on the
            # image is unit-scaled for the sign step (an equal say, as in the cloak); the
            # coefficients get the plain gradient of the mean similarity.
            final = (warp_only + additive).clamp(0, 1)
            seen = final.detach().requires_grad_(True)
            g_seen, g_sign, sims = torch.zeros_like(seen), torch.zeros_like(seen), {}
            looked = chain(seen, gen)  # as a recognizer would see it, one draw per step
            for s in self.surrogates:
                emb = s(looked)
                sim = similarity(s, emb, ref[s.name])[0]
                loss = sign * sim + (similarity(s, emb, own[s.name])[0] if own is not None else 0)
                (g,) = torch.autograd.grad(loss, seen, retain_graph=True)
                g_seen += g / len(self.surrogates)
                g_sign += float(cfg.surrogate_weights.get(s.name, 1.0)) * unit_scale(g)
                sims[s.name] = float(sim.detach())
            if cfg.warp and cfg.keep_weight > 0:  # the noise must not take the warp's expression away
                lost = (log_p.detach() - self.expression.log_probs(looked)[0, column]).clamp(min=0)
                if float(lost.detach()) > 0:
                    (g_keep,) = torch.autograd.grad(lost, seen)
                    g_sign += cfg.keep_weight * unit_scale(g_keep)
            w = cfg.identity_weight
            (g_add,) = torch.autograd.grad(final, additive, grad_outputs=w * g_sign, retain_graph=cfg.warp)
            record = None
            if cfg.warp:
                (g_a,) = torch.autograd.grad(final, coeffs, grad_outputs=w * g_seen)
                direction, (record,) = projector(g_a, g_e)
                adam.zero_grad()
                coeffs.grad = direction
                adam.step()
            sign_step(additive, g_add, cfg.alpha, eps)
            losses.append({"log_p": log_p.item(), "template": closeness.item(), "laplacian": smooth.item(),
                           "expression": loss_e.item(), "identity": sign * float(np.mean(list(sims.values()))),
                           "similarity": sims, "cosine": record.cosine if record else None,
                           "conflict": record.conflict if record else None,
                           "fallback": record.fallback if record else None})
            if progress:
                progress(step + 1, cfg.steps)

        with torch.no_grad():
            limited = limit_displacements(points, (coeffs[None, :, None, None] * basis).sum(1))
            d = limited.displacements
            grid = warp_grid(points, d)
            warp_only = sample(x, grid)
            final = (warp_only + project(additive, eps)).clamp(0, 1)
            det = jacobian_determinant(grid)
            iod = interocular_distance(points)
            p_clean = float(self.expression(x)[0, column])
            p_warp = float(self.expression(warp_only)[0, column])
            p_final = float(self.expression(final)[0, column])
            sims = {s.name: {"warp_only": float(similarity(s, s(warp_only), ref[s.name])[0]),
                             "final": float(similarity(s, s(final), ref[s.name])[0])} for s in self.surrogates}
        return dict(
            clean=x[0].cpu(), warp_only=warp_only[0].cpu(), final=final[0].cpu(),
            points=points[0].cpu(), displacements=d[0].cpu(),
            coefficients=dict(zip(names, coeffs.detach().cpu().tolist())),
            max_move_iod=float((d.norm(dim=-1) / iod[:, None]).max()),
            min_det=float(det.min()), max_det=float(det.max()),
            additive_linf=float((final - warp_only).abs().max()),
            p_emotion={"clean": p_clean, "warp_only": p_warp, "final": p_final}, similarity=sims, losses=losses,
            seconds=time.perf_counter() - t0,
        )


# ------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------


def paste_warp(rgb: np.ndarray, transform, points: torch.Tensor, displacements: torch.Tensor) -> np.ndarray:
    """The landmark warp applied to the photo itself, at its own resolution.

    Pasting the canonical delta ``warped - clean`` (256 px) back into a photo whose face is larger
    than the canonical square leaves the photo's fine detail where it was and adds a blurred,
    moved copy: on a 626 x 1200 photo the nasolabial fold showed twice. Here every photo pixel p
    of the face region reads the photo at ``M^-1 g(M p)`` (M: photo -> canonical, g: the warp's
    backward map, interpolated from its canonical grid), blended in with the feathered region
    weight as :func:`faceprot.canonical.paste_back` does; pixels outside the face square are
    left as they are, bit for bit.

    Args:
        rgb: (H, W, 3) uint8.  transform: the face's :class:`~faceprot.canonical.FaceTransform`.
        points, displacements: (68, 2) canonical pixels (:class:`FaceDisguise`'s).
    Returns:
        (H, W, 3) uint8.
    """
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = transform.region_bbox(w, h)
    out = rgb.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    grid = warp_grid(points[None].double(), displacements[None].double())
    moves = (to_pixels(grid) - to_pixels(identity_grid(dtype=torch.float64)))[0].numpy().astype(np.float32)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    m = transform.matrix
    qx = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]).astype(np.float32)  # canonical coordinates
    qy = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]).astype(np.float32)
    look = dict(interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    sx = qx + cv2.remap(np.ascontiguousarray(moves[..., 0]), qx, qy, **look)
    sy = qy + cv2.remap(np.ascontiguousarray(moves[..., 1]), qx, qy, **look)
    weight = cv2.remap(region_weight(), qx, qy, **look)[..., None]
    inv = transform.inverse
    px = (inv[0, 0] * sx + inv[0, 1] * sy + inv[0, 2]).astype(np.float32)
    py = (inv[1, 0] * sx + inv[1, 1] * sy + inv[1, 2]).astype(np.float32)
    warped = cv2.remap(rgb, px, py, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    patch = rgb[y0:y1, x0:x1].astype(np.float32)
    blended = patch + weight * (warped.astype(np.float32) - patch)
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


class DisguisedPhoto:
    """What every engine's result offers: the output photo, its notices and its PNG (from the
    result's ``protected``, a :class:`~faceprot.protect.Protected`)."""

    protected: Protected

    @property
    def picture(self) -> Picture:
        return self.protected.picture

    @property
    def notices(self) -> list[str]:
        return self.protected.notices

    def png(self) -> bytes:
        """The disguised photo as a lossless PNG (see :func:`faceprot.io.encode_png`)."""
        return encode_png(self.protected.picture)


@dataclass
class DisguiseResult(DisguisedPhoto):
    """A disguised photo and what was done to it.

    protected: the output (:class:`~faceprot.protect.Protected`: ``.picture`` has the input's size,
    alpha and ICC profile).  warp_only: the same photo with the warp alone pasted back (no
    additive perturbation), for comparison.  faces: per chosen face, :class:`FaceDisguise`.
    """

    protected: Protected
    warp_only: Picture
    faces: list[FaceDisguise]
    emotion: str
    strength: str
    seed: int
    target: bool
    surrogates: list[str]
    config: DisguiseConfig
    seconds: dict[str, float] = field(default_factory=dict)


def embed_faces(models: list, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per surrogate, (D,) embedding of the first canonical face of ``x`` (1, 3, S, S), on the CPU."""
    with torch.no_grad():
        return {s.name: s(x.to(s.device))[0].cpu() for s in models}


def target_embeddings(target, models: list, what: str = "target photo") -> dict[str, torch.Tensor]:
    """Per surrogate, (D,) embedding of the largest face of a photo (the target's, or yours with
    ``faces="me"``); a :class:`NoFaceError` that names ``what`` when it has no usable face."""
    try:
        located = locate(target, "largest")
    except NoFaceError as e:
        raise NoFaceError(f"The {what} has no usable face. {e}") from None
    face = located.chosen[0]
    return embed_faces(models, align(located.picture.rgb, face.transform))


def reference_embeddings(target, models: list) -> dict[str, torch.Tensor] | None:
    """Per surrogate, (D,) the embedding to impersonate: None to dodge (``target`` None), a target
    photo's largest face's, or a dict of embeddings by surrogate name as they are (a built-in
    target, :mod:`faceprot.disguise.gallery`); a :class:`FaceprotError` when that dict lacks one."""
    if target is None:
        return None
    if not isinstance(target, dict):
        return target_embeddings(target, models)
    missing = [s.name for s in models if s.name not in target]
    if missing:
        raise FaceprotError(f"The target has no embedding for {', '.join(missing)}; attack "
                            f"{', '.join(target) or 'another recognizer'} instead.")
    return {s.name: torch.as_tensor(target[s.name], dtype=torch.float32) for s in models}


def faces_matching(rgb: np.ndarray, faces: list[Face], reference: dict[str, torch.Tensor], models: list) -> list[Face]:
    """The faces that any surrogate matches to the reference embeddings (its own threshold)."""
    if not faces:
        return []
    x = align(rgb, [f.transform for f in faces])
    mine = np.zeros(len(faces), bool)
    with torch.no_grad():
        for s in models:
            scores = s.score(s(x.to(s.device)), reference[s.name].to(s.device)[None])
            mine |= np.array([s.is_match(float(v)) for v in scores])
    return [f for f, m in zip(faces, mine) if m]


def locate_faces(photo, faces: Selection | Sequence[Face] = "largest", me=None, models: Sequence = (),
                 detector=None) -> Located:
    """The photo read once and the faces to disguise found in it, for either engine.

    Args:
        photo: as :func:`disguise` (a :class:`~faceprot.protect.Located` photo is returned as it is).
        faces: as :func:`disguise`; with "me", the faces that any of ``models`` (loaded surrogates)
            matches to the largest face of the photo ``me``.
    Raises:
        NoFaceError (no face; with "me", none matching or none in ``me``), FaceprotError ("me"
        without ``me``).
    """
    if isinstance(photo, Located):
        return photo
    if faces != "me":
        return locate(photo, faces, detector)
    if me is None:
        raise FaceprotError('faces="me" needs a photo of you (me=...) to recognise your face by.')
    pic = as_picture(photo)
    everyone = locate(pic, "all", detector, min_px=0).found
    mine = faces_matching(pic.rgb, everyone, target_embeddings(me, models, "photo of you"), models)
    if not mine:
        raise NoFaceError("None of the faces in this photo matched the photo of you.")
    return locate(pic, select_faces(mine, "all"), found=everyone)


def disguise(photo, emotion: str = "happy", target=None, strength: str = "medium", seed: int = 0,
             faces: Selection | Sequence[Face] = "largest", surrogates: list[str] | None = None,
             device: str | None = None, progress: Progress | None = None, projection: str = "gradvac",
             *, me=None, detector=None, offered_only: bool = True, **overrides) -> DisguiseResult:
    """Give the chosen faces of a photo an expression and hide who they are from face recognition.

    Args:
        photo: a path, bytes, PIL image, array, :class:`~faceprot.io.Picture`, or a
            :class:`~faceprot.protect.Located` photo whose faces were found already.
        emotion: one of :data:`OFFERED` (now: "happy").
        target: None to dodge (move each face away from its own clean embedding), a photo of
            someone else to impersonate (move towards the embedding of its largest face), or a
            dict of embeddings by surrogate name (a built-in target,
            :func:`faceprot.disguise.gallery.load_target`).
        strength: "low", "medium" or "high": the additive budget (:data:`STRENGTHS`).
        seed: makes the result reproducible (face i uses seed + i): same seed, same bytes.
        faces: "largest" (default), "all", "me" (the faces that match the photo ``me``), face
            indices (0 = leftmost) or :class:`~faceprot.faces.Face` records found in this photo.
        surrogates: recognizers to optimise against (default: the default ensemble available).
        device: "auto"/None (a GPU when there is one), "cpu" or "cuda".
        progress: called as progress(fraction, message).
        projection: "gradvac" (default), "pcgrad" or "sum" (:class:`~.projection.GradientProjector`).
        me: with ``faces="me"``, a photo of the person whose faces to disguise.
        detector: as :func:`faceprot.protect.locate`.
        offered_only: False lets a benchmark run an emotion that has a template but is not offered
            (surprise, sad, angry): the benchmark still reports them (issue 15).
        overrides: any :class:`DisguiseConfig` field (steps, lr, identity_weight, ...).
    Returns:
        :class:`DisguiseResult`; only pixels in the chosen faces' squares change.
    Raises:
        EmotionError (unknown or not offered emotion), NoFaceError (no face in the photo or in the
        target; no face matching ``me``), LandmarkError (a face whose landmarks are unusable),
        FaceprotError (an unknown strength or projection, no recognizer available).
    """
    say = progress or (lambda f, m: None)
    t0 = time.perf_counter()
    if offered_only or emotion not in EMOTIONS:
        check_emotion(emotion)
    if strength not in STRENGTHS:
        raise FaceprotError(f"Unknown strength {strength!r}; choose {', '.join(STRENGTHS)}.")
    cfg = DisguiseConfig(**{"eps": STRENGTHS[strength], "projection": projection,
                            **{k: v for k, v in overrides.items() if v is not None}})
    names = list(surrogates) if surrogates else default_surrogates()
    if not names:
        raise FaceprotError("No face recognizer is available to optimise against.")
    dev = resolve_device(device)
    models = [load_surrogate(n, dev) for n in names]
    engine = EmotionDisguise(models, load_expression_model("expression", dev), cfg)

    say(0.02, "Finding the faces")
    located = locate_faces(photo, faces, me, models, detector)
    points = [check_landmarks(f) for f in located.chosen]
    reference = reference_embeddings(target, models)
    t_locate = time.perf_counter() - t0

    records: list[FaceDisguise] = []
    n = len(located.chosen)

    def edit(x: torch.Tensor, i: int) -> torch.Tensor:
        ref = reference if reference is not None else embed_faces(models, x)
        scale = 1 / located.chosen[i].transform.scale  # photo pixels per canonical pixel
        out = engine(x, torch.from_numpy(points[i])[None], emotion, ref, impersonate=reference is not None,
                     away=embed_faces(models, x) if reference is not None else None,
                     seed=seed + i, scale=scale, progress=lambda k, m: say(0.05 + 0.93 * (i + k / m) / n,
                                                              f"Face {i + 1} of {n}: step {k}/{m}"))
        records.append(FaceDisguise(face=located.chosen[i], **out))
        return out["final"] - x[0].cpu()

    def paste(rgb: np.ndarray, i: int, delta: torch.Tensor) -> np.ndarray:
        """The warp at the photo's resolution, then the additive part on top."""
        r = records[i]
        return paste_back(paste_warp(rgb, r.face.transform, r.points, r.displacements), r.face.transform, r.additive)

    t = time.perf_counter()
    protected = protect_faces(located, edit, paste)
    t_opt = time.perf_counter() - t
    rgb = located.picture.rgb
    for r in records:  # the warp alone, pasted the same way, for comparison
        rgb = paste_warp(rgb, r.face.transform, r.points, r.displacements)
    say(1.0, "Done")
    return DisguiseResult(protected, located.picture.with_rgb(rgb), records, emotion, strength, seed,
                          target is not None, names, cfg,
                          {"locate": t_locate, "optimise": t_opt, "total": time.perf_counter() - t0})


__all__ = ["disguise", "DisguiseResult", "DisguisedPhoto", "FaceDisguise", "EmotionDisguise", "DisguiseConfig",
           "expression_basis", "DIRECTIONS", "face_region", "OFFERED", "STRENGTHS", "MAX_EPS", "EmotionError",
           "LandmarkError", "check_emotion", "check_landmarks", "target_embeddings", "embed_faces",
           "reference_embeddings", "faces_matching", "locate_faces", "paste_warp"]
