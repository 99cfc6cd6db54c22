"""Faces in a photo: detection, 68 landmarks, the five alignment points, and face selection.

A :class:`Face` is the one record that flows from detection to alignment to scores. The default
detector is dlib's HOG detector (no weights, always available); others plug in through
:mod:`faceprot.detectors`. Landmarks always come from dlib's 68-point model, so every face record
carries the same 68 points whatever found the box.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from .canonical import FaceTransform
from .detectors.base import Detection, nms
from .errors import NoFaceError

#: Faces narrower than this (box width in photo pixels) are not protected: recognizers are
#: unreliable there and a mask stretched onto so few pixels is mostly rounding.
MIN_FACE_PX = 40

# dlib objects are not documented as thread-safe; the Gradio app serves several requests.
_DLIB_LOCK = threading.Lock()


@dataclass
class Face:
    """One face in a photo (all coordinates in the photo's pixels).

    box: (4,) x0, y0, x1, y1.  score: detector confidence.  landmarks68: (68, 2) dlib points.
    points5: (5, 2) eye centres, nose tip, mouth corners (InsightFace order), from the 68 points.
    """

    box: np.ndarray
    score: float
    landmarks68: np.ndarray
    detector: str = "dlib-hog"
    embeddings: dict = field(default_factory=dict, repr=False)

    @property
    def points5(self) -> np.ndarray:
        return points5_from_68(self.landmarks68)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    @functools.cached_property
    def transform(self) -> FaceTransform:
        return FaceTransform.from_points(self.points5)

    @property
    def canonical_landmarks(self) -> np.ndarray:
        """(68, 2) float64: the 68 points in the face's canonical square (canonical pixels)."""
        return np.hstack([self.landmarks68, np.ones((68, 1))]) @ self.transform.matrix.T

    def describe(self) -> str:
        x0, y0, x1, y1 = (int(round(v)) for v in self.box)
        return f"face at ({x0}, {y0})-({x1}, {y1}), {x1 - x0} px wide"


def points5_from_68(p: np.ndarray) -> np.ndarray:
    """(68, 2) dlib points -> (5, 2): eye centres (36-41, 42-47), nose tip (30), mouth corners (48, 54).

    dlib's left/right are in image terms, which is also the InsightFace template's order.
    """
    p = np.asarray(p, dtype=np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def packed(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` laid out as dlib takes it: C order with packed strides (copied only when needed).

    ``np.ascontiguousarray`` is not enough: numpy calls an array with a length-1 dimension
    contiguous whatever that dimension's stride, so the RGB of a 1-pixel RGBA picture keeps a
    pixel stride of 4, and dlib raises "The stride of the 2nd dimension (the columns dimension)
    of the numpy array must be 3".
    """
    rgb = np.asarray(rgb)
    strides, step = [], rgb.itemsize
    for n in reversed(rgb.shape):
        strides.insert(0, step)
        step *= n
    if rgb.flags.c_contiguous and rgb.strides == tuple(strides):
        return rgb
    return np.array(rgb, order="C", copy=True)


@functools.lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    from .registry import resolve

    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(resolve("dlib", "shape_predictor_68_face_landmarks.dat"))),
    )


class DlibHOGDetector:
    """dlib's HOG + linear SVM frontal face detector.

    Runs on a copy whose long side is at most ``max_side`` (speed), and retries with 1 then 2
    levels of upsampling when nothing is found (small or tightly cropped faces).
    """

    name = "dlib-hog"

    def __init__(self, max_side: int = 1024, max_upsample: int = 2):
        self.max_side = max_side
        self.max_upsample = max_upsample

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        det, _ = _dlib_models()
        h, w = rgb.shape[:2]
        f = min(1.0, self.max_side / max(h, w))
        # max(1, ...): a 60000x1 strip (within max_pixels) would otherwise be resized to 1024x0
        size = (max(1, round(w * f)), max(1, round(h * f)))
        small = rgb if f == 1.0 else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        small = packed(small)
        for up in range(self.max_upsample + 1):
            if up and max(small.shape[:2]) * 2**up > 3 * self.max_side:
                break  # HOG on a bigger image takes seconds; faces that small are refused anyway
            with _DLIB_LOCK:
                rects, scores, _ = det.run(small, up, -0.2 if up else 0.0)
            if len(rects):
                break
        out = []
        for r, s in zip(rects, scores):
            box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float64) / f
            out.append(Detection(box=box, score=float(s)))
        out.sort(key=lambda d: -d.score)
        if len(out) > 1:
            keep = nms(np.stack([d.box for d in out]), np.array([d.score for d in out]), 0.3)
            out = [out[i] for i in keep]
        return out


def landmarks68(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(68, 2) float64 dlib landmarks for the face in ``box`` (x0, y0, x1, y1)."""
    import dlib

    _, sp = _dlib_models()
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    with _DLIB_LOCK:
        shape = sp(rgb, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


#: Where dlib's HOG box sits in canonical space: centre (x, y) and side, averaged over 288 LFW
#: faces in ../shared (2026-11-22; std 5.5, 9.4 and 16 px).
HOG_BOX_IN_CANONICAL = (131.9, 151.8, 178.1)


def landmark_box(det: Detection) -> np.ndarray:
    """A detector box turned into the kind of box dlib's landmark model was trained on.

    dlib's 68-point model is sensitive to its box: it expects HOG-style boxes. Where a detector
    gives five points, the HOG box is rebuilt from them through the canonical space (the raw
    RetinaFace box gave landmarks 0.15 inter-ocular distances off, median, on LFW).
    """
    if det.points5 is None:
        return det.box
    t = FaceTransform.from_points(det.points5)
    cx, cy, side = HOG_BOX_IN_CANONICAL
    c = t.inverse @ np.array([cx, cy, 1.0])
    half = side / t.scale / 2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


_DEFAULT_DETECTOR = None


def default_detector():
    global _DEFAULT_DETECTOR
    if _DEFAULT_DETECTOR is None:
        _DEFAULT_DETECTOR = DlibHOGDetector()
    return _DEFAULT_DETECTOR


def get_detector(name: str | None = None):
    """A detector by name: "dlib-hog" (default), "retinaface", "scrfd"."""
    if name in (None, "", "dlib-hog"):
        return default_detector()
    if name == "retinaface":
        from .detectors.retinaface import RetinaFaceDetector

        return RetinaFaceDetector()
    if name == "scrfd":
        from .detectors.scrfd import SCRFDDetector

        return SCRFDDetector()
    raise ValueError(f"Unknown face detector {name!r}; choose dlib-hog, retinaface or scrfd.")


def detect_faces(rgb: np.ndarray, detector=None) -> list[Face]:
    """All faces in a photo, left to right, with 68 landmarks.

    Args:
        rgb: (H, W, 3) uint8.
        detector: a detector object or name; default dlib's HOG detector.
    """
    if detector is None or isinstance(detector, str):
        detector = get_detector(detector)
    rgb = packed(rgb)
    faces = []
    for d in detector.detect(rgb):
        pts = landmarks68(rgb, landmark_box(d))
        faces.append(Face(box=np.asarray(d.box, dtype=np.float64), score=d.score,
                          landmarks68=pts, detector=detector.name))
    faces.sort(key=lambda f: (f.box[0] + f.box[2]) / 2)
    return faces


Selection = str | int | Sequence[int]


def select_faces(faces: list[Face], which: Selection = "largest", *, min_px: int = MIN_FACE_PX) -> list[Face]:
    """Choose faces to work on.

    Args:
        faces: from :func:`detect_faces` (left to right).
        which: "largest" (default), "all", or face indices (0 = leftmost) as an int or a sequence.
        min_px: faces narrower than this are skipped (with "all") or refused (when asked for).
    Raises:
        NoFaceError with a readable message when nothing usable is left.
    """
    if not faces:
        raise NoFaceError(
            "No face was found in this photo. Use a photo where the face is visible, roughly "
            f"frontal, and at least {MIN_FACE_PX} pixels wide."
        )
    if isinstance(which, str):
        if which == "largest":
            chosen = [max(faces, key=lambda f: f.area)]
        elif which == "all":
            chosen = list(faces)
        else:
            raise ValueError(f"Face selection must be 'largest', 'all' or face numbers, not {which!r}.")
    else:
        idx = [which] if isinstance(which, (int, np.integer)) else list(which)
        bad = [i for i in idx if not 0 <= int(i) < len(faces)]
        if bad:
            raise NoFaceError(
                f"Face number(s) {', '.join(str(i) for i in bad)} do not exist: this photo has "
                f"{len(faces)} face(s), numbered 0 to {len(faces) - 1} from left to right."
            )
        chosen = [faces[int(i)] for i in idx]
    usable = [f for f in chosen if f.width >= min_px]
    if not usable:
        widths = ", ".join(f"{f.width:.0f}" for f in chosen)
        raise NoFaceError(
            f"The face found is too small ({widths} px wide); faceprot needs faces at least "
            f"{min_px} px wide to protect and score them reliably. Use a larger photo or crop closer."
        )
    return usable


def find_faces(rgb: np.ndarray, which: Selection = "largest", detector=None,
               min_px: int = MIN_FACE_PX) -> list[Face]:
    """Detect and select faces in one call (see :func:`detect_faces`, :func:`select_faces`)."""
    return select_faces(detect_faces(rgb, detector), which, min_px=min_px)


