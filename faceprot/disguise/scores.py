"""What a disguise did, measured on the output photo the way a user would get it: face recognition
(similarity to the person and to the target), the expression (two classifiers and the landmark
measure), and a drawing of the landmark warp.

Every score here re-detects the face on the output photo, as a face search would; none reads the
optimiser's own canonical tensors. The roles:

* recognizers attacked by the disguise are *white-box*, the others *black-box*
  (:func:`faceprot.evaluators.role_of`);
* the ``expression`` classifier is *white-box* (its log-probability is in the objective); the
  ``expression-heldout`` one, where it is installed, is *black-box* (it only judges); the landmark
  measure needs no weights, and pixels cannot fool it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..canonical import align
from ..errors import NoFaceError
from ..evaluators import Score, available_evaluators, compare_photos, get_evaluator, role_of
from ..expression import expression_model_available, load_expression_model
from ..faces import find_faces
from .engine import DisguiseResult
from .measure import EMOTION_RULES, landmark_verdict


def scoring_target(target, evaluators=None) -> dict[str, np.ndarray]:
    """The target as embeddings for every evaluator that can score it: a built-in target's dict
    as it is (the recognizers it carries), or a photo's largest face embedded by each evaluator."""
    names = list(evaluators or available_evaluators())
    if isinstance(target, dict):
        return {n: np.asarray(target[n]) for n in names if n in target}
    from ..protect import as_picture

    pic = as_picture(target)
    try:
        face = find_faces(pic.rgb)[0]
    except NoFaceError as e:
        raise NoFaceError(f"The target photo has no usable face. {e}") from None
    out = {}
    for n in names:
        try:
            out[n] = get_evaluator(n).embed(pic.rgb, face)
        except NoFaceError:
            pass
    return out


def target_scores(output_rgb: np.ndarray, target: dict[str, np.ndarray], surrogates, face=None) -> list[Score]:
    """Each evaluator's verdict on a face of the output photo against the target's embedding
    (a :class:`~faceprot.evaluators.Score` per evaluator the target has; score None where the
    evaluator finds no face on the output). The face is ``face`` (found in the output already), or
    by default the output's largest."""
    if face is None:
        try:
            face = find_faces(output_rgb)[0]
        except NoFaceError:
            face = None
    out = []
    for name, ref in target.items():
        ev = get_evaluator(name)
        role, note = role_of(name, surrogates)
        try:
            if face is None:
                raise NoFaceError("no face")
            s = ev.score(np.asarray(ev.embed(output_rgb, face)), np.asarray(ref))
            out.append(Score(name, ev.metric, s, ev.threshold.value, ev.is_match(s), role, note))
        except NoFaceError:
            out.append(Score(name, ev.metric, None, ev.threshold.value, None, role, note + "; no face found"))
    return out


@dataclass
class ExpressionReading:
    """One judge's reading of the expression, before and after.

    judge: "expression", "expression-heldout" or "landmarks".  role: "white-box (in the objective)",
    "black-box (judge only)" or "no weights".  before / after: the top emotion (classifiers) or
    the measured changes (landmarks: "-" before).  p_before / p_after: the requested emotion's
    probability (classifiers; None for the landmarks).  shown: does the output show the emotion
    by this judge (None where it cannot say, e.g. no face found).
    """

    judge: str
    role: str
    before: str
    after: str
    p_before: float | None
    p_after: float | None
    shown: bool | None
    note: str = ""


def _classifier_reading(name: str, role: str, clean: torch.Tensor, out: torch.Tensor | None,
                        emotion: str) -> ExpressionReading:
    model = load_expression_model(name)
    col = model.index(emotion)
    with torch.no_grad():
        p0 = model(clean.to(model.device))[0].cpu()
        p1 = model(out.to(model.device))[0].cpu() if out is not None else None
    top = lambda p: model.emotions[int(p.argmax())]  # noqa: E731
    if p1 is None:
        return ExpressionReading(name, role, top(p0), "no face", float(p0[col]), None, None)
    return ExpressionReading(name, role, top(p0), top(p1), float(p0[col]), float(p1[col]), top(p1) == emotion)


def same_face(rgb: np.ndarray, face, min_iou: float = 0.3):
    """The face found in ``rgb`` whose box overlaps ``face``'s the most (intersection over union
    at least ``min_iou``): the same person's face in an edited copy of the photo, where the largest
    face may be somebody else's. None where no face found there overlaps it enough."""
    try:
        found = find_faces(rgb, "all", min_px=0)
    except NoFaceError:
        return None
    a = np.asarray(face.box, dtype=np.float64)

    def iou(f) -> float:
        b = np.asarray(f.box, dtype=np.float64)
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    best = max(found, key=iou)
    return best if iou(best) >= min_iou else None


def expression_readings(clean_rgb: np.ndarray, output_rgb: np.ndarray, emotion: str,
                        clean_face=None, output_face=None) -> list[ExpressionReading]:
    """The expression of a face in the clean and the output photo, read three ways: the
    objective's classifier, the held-out one (where installed) and the landmark measure (where it
    has a rule for the emotion). The face is ``clean_face`` (default: the clean photo's largest),
    found again in the output where it overlaps it (:func:`same_face`), unless ``output_face`` is
    that face found already."""
    face0 = clean_face or find_faces(clean_rgb)[0]
    clean = align(clean_rgb, face0.transform)
    face1 = output_face or same_face(output_rgb, face0)
    out = align(output_rgb, face1.transform) if face1 is not None else None
    readings = [_classifier_reading("expression", "white-box (in the objective)", clean, out, emotion)]
    if expression_model_available("expression-heldout")[0]:
        readings.append(_classifier_reading("expression-heldout", "black-box (judge only)", clean, out, emotion))
    rule = EMOTION_RULES.get(emotion)
    if rule is not None and rule.supported:
        edited = face1.landmarks68 if face1 is not None else None  # no face: the measure says so
        shown, details = landmark_verdict(face0.landmarks68, edited, emotion)
        if details["face"]:
            changes = ", ".join(f"{f.replace('_', ' ')} {details['changes'][f]:+.3f} (needs {t:+.3f})"
                                for f, t in details["thresholds"].items())
            readings.append(ExpressionReading("landmarks", "no weights", "-", changes, None, None, shown,
                                              "changes in inter-ocular distances, against the clean photo"))
        else:
            readings.append(ExpressionReading("landmarks", "no weights", "-", "no face", None, None, None))
    return readings


@dataclass
class DisguiseScores:
    """self: each evaluator, the output against the clean photo (match = still recognised).
    target: each evaluator the target has, the output against the target (match = impersonated);
    empty when dodging.  expression: :class:`ExpressionReading` per judge."""

    self: list[Score]
    target: list[Score] = field(default_factory=list)
    expression: list[ExpressionReading] = field(default_factory=list)


def score_disguise(result: DisguiseResult, clean_rgb: np.ndarray, target=None) -> DisguiseScores:
    """Score a disguise's output photo (``result.picture``) against its clean photo.

    Args:
        result: from :func:`~.engine.disguise`.
        clean_rgb: the photo that was disguised.
        target: what was impersonated, if anything (a photo or a built-in target's dict).
    """
    out = result.picture.rgb
    face = result.faces[0].face
    found = same_face(out, face)
    if found is None:  # faceprot's detector lost the face: the recognizers that use it read nothing
        self_scores = []
        for name in available_evaluators():
            ev = get_evaluator(name)
            role, note = role_of(name, tuple(result.surrogates))
            self_scores.append(Score(name, ev.metric, None, ev.threshold.value, None, role,
                                     note + "; no face found where the disguised face is"))
    else:
        self_scores = compare_photos(clean_rgb, out, surrogates=result.surrogates, face_a=face, face_b=found)
    tgt = []
    if target is not None:
        tgt = target_scores(out, scoring_target(target), result.surrogates, found)
        if found is None:  # not the largest face's: the disguised face was not found at all
            tgt = [Score(t.evaluator, t.metric, None, t.threshold, None, t.role, t.note) for t in tgt]
    return DisguiseScores(self_scores, tgt, expression_readings(clean_rgb, out, result.emotion, face, found))


# ------------------------------------------------------------------------------------ pictures

#: Arrows are drawn this many times longer than the moves (which are at most 0.12 IOD, ~8 px).
ARROW_GAIN = 3.0


def warp_arrows(result: DisguiseResult, face: int = 0, scale: int = 2, gain: float = ARROW_GAIN) -> np.ndarray:
    """The landmark warp drawn on the clean canonical face: a dot at each of the 68 landmarks and an
    arrow to where the warp moved it, lengthened ``gain`` times so that a few pixels show.

    Returns (256*scale, 256*scale, 3) uint8 RGB."""
    r = result.faces[face]
    img = (r.clean.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    img = (0.6 * img + 0.4 * 255).astype(np.uint8)  # paler, so the arrows stand out
    p = r.points.numpy() * scale
    d = r.displacements.numpy() * scale * gain
    for (x, y), (dx, dy) in zip(p, d):
        a = (int(round(x)), int(round(y)))
        b = (int(round(x + dx)), int(round(y + dy)))
        if abs(dx) + abs(dy) >= 1:
            cv2.arrowedLine(img, a, b, (200, 30, 30), 2, cv2.LINE_AA, tipLength=0.35)
        cv2.circle(img, a, 2, (20, 60, 200), -1, cv2.LINE_AA)
    return img


__all__ = ["score_disguise", "DisguiseScores", "ExpressionReading", "expression_readings", "target_scores",
           "scoring_target", "warp_arrows", "ARROW_GAIN"]
