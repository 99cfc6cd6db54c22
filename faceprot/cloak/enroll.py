"""Enrollment: one selfie in, a :class:`PersonalMask` out (the whole FaceCloak pipeline).

    selfie -> face -> views (stage 1) -> budget map, anchors -> universal PGD (stage 2) -> mask (stage 3)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
import torch

from ..errors import FaceprotError
from ..faces import Face
from ..io import Picture
from ..protect import as_picture, locate
from ..recognizers import default_surrogates, load_surrogate
from ..runtime import resolve_device
from .anchors import AnchorGallery, Anchors, choose_anchors
from .focus import FocusMaps, budget_map, face_hull
from .maskfile import PersonalMask
from .optimizer import CloakConfig, UniversalCloak
from .perceptual import PerceptualBudget
from .views import Views, make_views

#: Strength presets. low, medium and high are points on the perceptual budget's frontier (cloak
#: v2, issue 16: a luminance/chroma box scaled by texture, low in the eyes) at budget scales 0.35,
#: 0.5 and 1 of :class:`PerceptualBudget`'s defaults, chosen on LFW people 100-199 and blind looks
#: (BENCHMARKS.md, "Cloak v2"): medium is the strongest point a reviewer could not tell from the
#: clean photo (scale 0.75 was told in 20 of 20 pairs); it protects far less than v1 did. All three
#: touch the head only (``head_margin``), not the background beside it.
#: "paper" is the paper's setting (FACTS.md section 6: an L-inf box in RGB, 8/255 and 16/255 on
#: stickers and high-pass; cloak v1's medium), kept for comparison and teaching.
def perceptual_preset(scale: float, iterations: int = 10, base: PerceptualBudget | None = None) -> dict:
    """CloakConfig fields of the perceptual budget at ``scale`` times its four budgets (of ``base``,
    by default :class:`PerceptualBudget`'s defaults): a point on v2's frontier."""
    b = base or PerceptualBudget()
    return dict(budget="perceptual", iterations=iterations, luma_flat=b.luma_flat * scale,
                luma_texture=b.luma_texture * scale, eye_luma=b.eye_luma * scale, eye_chroma=b.eye_chroma * scale)


PRESETS: dict[str, dict] = {
    "low": perceptual_preset(0.35),
    "medium": perceptual_preset(0.5),
    "high": perceptual_preset(1.0),
    "paper": dict(eps=8 / 255, eps_high=16 / 255, alpha=2 / 255, iterations=10, budget="box"),
}
#: the strengths a user picks from (the app's radio, the CLI); "paper" is for comparison
STRENGTHS = ("low", "medium", "high")

Progress = Callable[[float, str], None]


def perceptual_focus(rule: PerceptualBudget, selfie: np.ndarray, landmarks: np.ndarray) -> tuple[FocusMaps, np.ndarray]:
    """The perceptual budget (3, 256, 256) of the aligned selfie, and its teaching maps: the
    luminance budget, no stickers, and "high-pass" where the texture takes the budget past halfway."""
    budget = rule(selfie, landmarks)
    face = face_hull(landmarks)
    textured = face & (rule.texture(selfie, face) >= 0.5)
    focus = FocusMaps(budget[0], np.zeros_like(face), textured, face, float(textured.sum() / max(face.sum(), 1)))
    return focus, budget


def config_for(preset: str = "medium", **overrides) -> CloakConfig:
    if preset not in PRESETS:
        raise FaceprotError(f"Unknown strength {preset!r}; choose {', '.join(PRESETS)}.")
    return CloakConfig(**{**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class Enrollment:
    """Everything enrollment made, for saving (``mask``) and for teaching (the maps)."""

    mask: PersonalMask
    views: Views
    focus: FocusMaps
    attention: np.ndarray
    anchors: Anchors | None
    losses: list[float]
    face: Face
    selfie: Picture
    seconds: dict[str, float] = field(default_factory=dict)

    def teaching_maps(self) -> dict[str, np.ndarray]:
        """RGB uint8 (256, 256, 3) pictures: where the budget is larger, what attention chose,
        and the mask itself amplified to be visible."""
        face = self.views.pictures()[0]
        gray = cv2.cvtColor(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB).astype(np.float32)

        def overlay(mask: np.ndarray, colour) -> np.ndarray:
            out = gray * 0.6
            out[mask] = out[mask] * 0.4 + np.array(colour, np.float32) * 0.6
            return np.clip(out, 0, 255).astype(np.uint8)

        def heat(v: np.ndarray) -> np.ndarray:
            m = cv2.applyColorMap(np.clip(v * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
            return cv2.cvtColor(m, cv2.COLOR_BGR2RGB)

        d = self.mask.delta.transpose(1, 2, 0)
        amp = np.clip(0.5 + d / (2 * max(self.mask.eps_high, 1e-6)), 0, 1)
        if self.mask.budget_rule() is not None:  # the perceptual budget: no stickers, no high-pass
            first = {"budget": heat(self.focus.budget / max(float(self.focus.budget.max()), 1e-6)),
                     "eyes (kept still)": overlay(self.mask.budget_rule().eyes(self.views.landmarks[0]),
                                                  (255, 80, 40))}
        else:
            first = {"stickers": overlay(self.focus.stickers, (255, 80, 40)),
                     "high-pass": overlay(self.focus.high_pass, (40, 200, 255))}
        return {**first, "attention": heat(self.attention), "mask (amplified)": (amp * 255).round().astype(np.uint8)}


def enroll(selfie, *, preset: str = "medium", seed: int = 0, generator="augment", n_views: int = 8,
           surrogates: list[str] | None = None, store_identity: bool = False, face: str | int | Face = "largest",
           gallery: AnchorGallery | None = None, progress: Progress | None = None,
           device: str | None = None, **overrides) -> Enrollment:
    """Make a personal mask from one selfie.

    Args:
        selfie: a path, bytes, PIL image, array or :class:`Picture` (see :func:`faceprot.io.load_image`).
        preset: "low", "medium" (the default), "high" (the perceptual budget, scaled), or
            "paper" (the paper's RGB box, cloak v1's medium).
        seed: makes views, the real-life chain and so the mask reproducible.
        generator: "augment" (CPU) or "arc2face" (GPU), or a generator object.
        n_views: generated views besides the selfie (paper: 8).
        surrogates: recognizers to optimise against (default: the default ensemble available here).
        store_identity: opt in to storing the person's embeddings in the mask file (enables
            "apply only to faces that are me").
        face: which face of the selfie: "largest", an index, or a :class:`Face` found in it already
            (then the selfie is not detected again).
        progress: called as progress(fraction, message).
        device: where the optimisation runs: "auto" or None (a GPU when there is one, else the CPU;
            ``$FACEPROT_DEVICE`` overrides), "cpu" or "cuda". The mask comes back on the CPU either way.
        overrides: any :class:`CloakConfig` field (eps, iterations, use_attention, ...);
            ``budget="perceptual"`` (with luma_flat, luma_texture, chroma_ratio, ...; low, medium
            and high) saves a format-2 mask, ``budget="box"`` (eps, eps_high; paper) a format-1 one.
    """
    say = progress or (lambda f, m: None)
    t0 = time.perf_counter()
    cfg = config_for(preset, **overrides)
    pic = as_picture(selfie)
    say(0.02, "Finding the face")
    the_face = face if isinstance(face, Face) else locate(pic, face).chosen[0]
    names = list(surrogates) if surrogates else default_surrogates()
    if not names:
        raise FaceprotError("No face recognizer is available to optimise against.")
    dev = resolve_device(device)
    models = [load_surrogate(n, dev) for n in names]
    torch.manual_seed(seed)

    say(0.05, "Making varied views of the face")
    t = time.perf_counter()
    views = make_views(pic.rgb, the_face, generator, n=n_views, seed=seed)
    t_views = time.perf_counter() - t
    x = views.images

    say(0.25, "Choosing anchors and budget")
    t = time.perf_counter()
    rule = cfg.perceptual_budget()
    if rule is None:  # the paper's box in RGB
        focus = budget_map(views.pictures()[0], views.landmarks[0], cfg.eps, cfg.eps_high,
                           use_stickers=cfg.use_stickers, use_high_pass=cfg.use_high_pass,
                           max_high_fraction=cfg.max_high_fraction)
        budget_np = focus.budget[None]
    else:
        focus, budget_np = perceptual_focus(rule, views.pictures()[0], views.landmarks[0])
    budget = torch.from_numpy(budget_np)
    cloak = UniversalCloak(models, cfg)
    person = cloak.person_embeddings(x)
    anchors = choose_anchors(person, models, gallery) if cfg.use_anchors else None
    t_anchors = time.perf_counter() - t

    t = time.perf_counter()
    result = cloak(x, budget, anchors, person, seed=seed,
                   progress=lambda i, n: say(0.3 + 0.68 * i / n, f"Optimising the mask ({i}/{n})"))
    t_opt = time.perf_counter() - t

    eps, eps_high = (cfg.eps, cfg.eps_high) if rule is None else (rule.luma_flat, rule.luma_texture)
    mask = PersonalMask(
        delta=result.delta.numpy(), budget=budget_np, eps=eps, eps_high=eps_high,
        perceptual=None if rule is None else rule.to_dict(),
        surrogates=names, generator=views.generator, seed=seed, preset=preset,
        identity={k: v.numpy() for k, v in person.items()} if store_identity else None,
        extra={**cfg.to_dict(), "views": int(len(views.images)), "device": dev.type},
    )
    say(1.0, "Done")
    return Enrollment(mask, views, focus, result.attention, anchors, result.losses, the_face, pic,
                      {"views": t_views, "anchors": t_anchors, "optimise": t_opt,
                       "total": time.perf_counter() - t0})
