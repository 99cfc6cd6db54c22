"""The cloak benchmark's comparison methods (``cloak.py``'s full mode), beside the personal cloak.

(a) ``noise_baseline``: uniform random noise with the mask's per-pixel budget;
(b) ``ReleasedCodeCloak``: the released code's approach (unaligned box crops, no focusing in the
    forward pass, the delta scaled up at application and resized back into the box);
(c) ``per_image_pgd``: the reference, PGD on the probe itself (its own views, budget, anchors).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from faceprot.attack import BudgetSpace
from faceprot.canonical import CANONICAL_SIZE, paste_back
from faceprot.cloak.apply import apply_mask
from faceprot.cloak.enroll import PRESETS, enroll
from faceprot.cloak.focus import HighPassMask, face_hull
from faceprot.cloak.optimizer import CloakConfig, UniversalCloak
from faceprot.errors import NoFaceError
from faceprot.faces import find_faces
from faceprot.recognizers import load_surrogate


def noise_baseline(rgb: np.ndarray, face, budget: np.ndarray, rng: np.random.Generator,
                   space: BudgetSpace | None = None) -> np.ndarray:
    """(a) uniform random noise with the mask's per-pixel budget, in the budget's own space: each
    RGB channel within a (1, S, S) box, or Y, Cb and Cr each within its plane of a (3, S, S) one."""
    u = rng.uniform(-1, 1, (3, CANONICAL_SIZE, CANONICAL_SIZE)) * budget
    d = (space or BudgetSpace("rgb")).to_rgb(torch.from_numpy(u.astype(np.float32))).numpy()
    return paste_back(rgb, face.transform, d)


class ReleasedCodeCloak:
    """(b) the released code's approach (FACTS.md section 6): the detector's face box resized to
    112x112 with no alignment; a universal delta optimised there at 4 levels with no focusing in
    the forward pass; at application the delta is doubled (8 levels) and doubled again inside the
    stickers and high-pass pixels (16 levels), and put back by a plain resize of the box region."""

    size = 112

    def __init__(self, surrogates: list[str], iterations: int = 10, seed: int = 0):
        self.models = [load_surrogate(n) for n in surrogates]
        self.iterations = iterations
        self.seed = seed

    def _box(self, rgb, face):
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, rgb.shape[1]), min(y1, rgb.shape[0])
        return x0, y0, x1, y1

    def _crop(self, rgb, face) -> np.ndarray:
        x0, y0, x1, y1 = self._box(rgb, face)
        return np.array(Image.fromarray(rgb[y0:y1, x0:x1]).resize((self.size, self.size), Image.BILINEAR))

    def _to_canonical(self, crops: torch.Tensor) -> torch.Tensor:
        """The surrogates take canonical input; feed the unaligned box crop where their crops sit."""
        import torch.nn.functional as F

        x = F.interpolate(crops, size=(224, 224), mode="bilinear", align_corners=False)
        return F.pad(x, (16, 16, 8, 24), mode="replicate")

    def enroll(self, selfie_rgb: np.ndarray, views_rgb: list[np.ndarray]):
        crops = []
        for pic in [selfie_rgb] + views_rgb:
            try:
                crops.append(self._crop(pic, find_faces(pic)[0]))
            except NoFaceError:
                pass
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
        eps = 4 / 255
        cloak = UniversalCloak(self.models, CloakConfig(eps=eps, eps_high=eps, iterations=self.iterations,
                                                        use_attention=False, use_anchors=False, use_eot=False))

        to_canonical = self._to_canonical

        class BoxSpace(torch.nn.Module):  # the surrogates see box crops mapped into their input region
            def __init__(s, m):
                super().__init__()
                s.m, s.name, s.metric, s.threshold = m, m.name, m.metric, m.threshold

            @property
            def device(s):
                return s.m.device

            def forward(s, t):
                return s.m(to_canonical(t))

        cloak.surrogates = [BoxSpace(m) for m in self.models]
        person = cloak.person_embeddings(x)
        budget = torch.full((1, self.size, self.size), eps)
        res = cloak(x, budget, None, person, seed=self.seed)
        # the focusing maps, added only at application (as the released code does)
        face = find_faces(selfie_rgb)[0]
        crop = self._crop(selfie_rgb, face)
        marks = (face.landmarks68 - face.box[:2]) * self.size / np.array(
            [face.box[2] - face.box[0], face.box[3] - face.box[1]])
        hull = face_hull(marks, self.size)
        from faceprot.cloak.focus import RegionStickers

        high = RegionStickers().mask(marks, size=self.size) | HighPassMask().mask(crop, hull)
        scale = np.where(high, 4.0, 2.0)[None]
        self.delta = res.delta.numpy() * scale  # (3, 112, 112), up to 16 levels
        return self

    def apply(self, rgb: np.ndarray, face) -> np.ndarray:
        x0, y0, x1, y1 = self._box(rgb, face)
        d = self.delta.transpose(1, 2, 0).astype(np.float32) * 255
        import cv2

        d = cv2.resize(d, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        out = rgb.astype(np.float32)
        out[y0:y1, x0:x1] += d
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def per_image_pgd(rgb: np.ndarray, face, surrogates: list[str], preset: str, seed: int) -> np.ndarray:
    """(c) reference: PGD on the probe itself (its own views, budget and anchors), 2x the iterations."""
    cfg = PRESETS[preset]
    en = enroll(rgb, preset=preset, seed=seed, surrogates=surrogates, n_views=8,
                iterations=cfg["iterations"] * 2)
    return apply_mask(rgb, en.mask).picture.rgb

