"""Evaluators: judge finished photos with a whole pipeline of their own.

* ``PipelineEvaluator``: faceprot's detection and alignment, then a surrogate's network.
* ``DlibCppEvaluator`` ("dlib-cpp"): dlib's own HOG detector, 5-point chip and C++ descriptor, same
  person when L2 < 0.6. It shares its network weights with ``dlib-resnet`` but none of faceprot's
  code, so it checks that a protection survives a pipeline faceprot did not build.

Each result says whether its recognizer was a surrogate in the optimisation (white-box) or not
(black-box).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np
import torch

from .canonical import align
from .errors import FaceprotError, ModelUnavailableError, NoFaceError
from .faces import Face, find_faces, packed
from .recognizers import SURROGATES, DEFAULT_SURROGATES, load_surrogate, surrogate_available
from .recognizers.base import Threshold

_DLIB_CPP_LOCK = threading.Lock()


@dataclass
class Score:
    """One evaluator's verdict on a pair of photos."""

    evaluator: str
    metric: str  # "cosine" or "l2"
    score: float | None  # None when a face was not found
    threshold: float
    match: bool | None
    role: str  # "white-box" or "black-box"
    note: str = ""

    def verdict(self) -> str:
        if self.match is None:
            return "no face found"
        return "match" if self.match else "no match"


class PipelineEvaluator:
    """faceprot detection + canonical alignment + a surrogate network."""

    def __init__(self, name: str):
        self.name = name
        self.model = load_surrogate(name)
        self.metric = self.model.metric
        self.threshold: Threshold = self.model.threshold

    @torch.no_grad()
    def embed_faces(self, rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
        """(N, D) embeddings of the given faces of one photo."""
        return self.model(align(rgb, [f.transform for f in faces])).numpy()

    def embed(self, rgb: np.ndarray, face: Face | None = None) -> np.ndarray:
        face = face or find_faces(rgb)[0]
        return self.embed_faces(rgb, [face])[0]

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(self.model.score(torch.from_numpy(a), torch.from_numpy(b)))

    def is_match(self, s: float) -> bool:
        return self.model.is_match(s)


@functools.lru_cache(maxsize=1)
def _dlib_cpp_models():
    import dlib

    from .registry import resolve

    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(resolve("dlib", "shape_predictor_5_face_landmarks.dat"))),
        dlib.face_recognition_model_v1(str(resolve("dlib", "dlib_face_recognition_resnet_model_v1.dat"))),
    )


class DlibCppEvaluator:
    """dlib's own pipeline: HOG detector (1 upsample), 5-point chip, C++ descriptor; L2 < 0.6."""

    name = "dlib-cpp"
    metric = "l2"
    threshold = Threshold(0.6, "dlib's documented threshold")

    def embed(self, rgb: np.ndarray, face: Face | None = None) -> np.ndarray:
        """Descriptor of the largest face dlib finds (``face`` is ignored: dlib detects itself)."""
        import dlib

        det, sp, rec = _dlib_cpp_models()
        rgb = packed(rgb)
        with _DLIB_CPP_LOCK:
            rects = det(rgb, 1)
            if not len(rects):
                raise NoFaceError("dlib's own detector found no face in this photo.")
            r = max(rects, key=lambda r: r.area())
            chip = dlib.get_face_chip(rgb, sp(rgb, r), size=150, padding=0.25)
            return np.array(rec.compute_face_descriptor(chip))

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b))

    def is_match(self, s: float) -> bool:
        return s < self.threshold.value


EVALUATOR_NAMES = ("dlib-cpp", *SURROGATES)


def available_evaluators() -> list[str]:
    return [n for n in EVALUATOR_NAMES if n == "dlib-cpp" or surrogate_available(n)[0]]


@functools.lru_cache(maxsize=None)
def get_evaluator(name: str):
    if name == "dlib-cpp":
        return DlibCppEvaluator()
    return PipelineEvaluator(name)


def role_of(name: str, surrogates) -> tuple[str, str]:
    """("white-box" | "black-box", note) for an evaluator given the surrogates used."""
    if name in surrogates:
        return "white-box", "attacked when the mask was made"
    if name == "dlib-cpp":
        note = "dlib's own pipeline"
        if "dlib-resnet" in surrogates:
            note += "; same network weights as dlib-resnet, which was attacked"
        return "black-box", note
    return "black-box", "never attacked: the mask never saw it"


def compare_photos(a: np.ndarray, b: np.ndarray, evaluators=None, surrogates=None,
                   face_a: Face | None = None, face_b: Face | None = None) -> list[Score]:
    """Score two photos (largest face of each) on every evaluator.

    Args:
        a, b: (H, W, 3) uint8 RGB photos.
        evaluators: names; default every available one.
        surrogates: which recognizers count as white-box; default the default ensemble.
        face_a, face_b: the face of each photo when faceprot has found it already (it is then not
            detected again); dlib-cpp always runs its own detector, as a pipeline of its own.
    Returns:
        one :class:`Score` per evaluator; an evaluator that finds no face gives score None.
    Raises:
        NoFaceError naming photo A or B when faceprot's own detector finds no usable face in it.
    """
    names = list(evaluators or available_evaluators())
    surrogates = tuple(DEFAULT_SURROGATES if surrogates is None else surrogates)
    faces = []
    for label, rgb, face in (("A", a, face_a), ("B", b, face_b)):
        try:
            faces.append(face or find_faces(rgb)[0])
        except NoFaceError as e:
            raise NoFaceError(f"Photo {label}: {e}") from None
    out = []
    for name in names:
        ev = get_evaluator(name)
        role, note = role_of(name, surrogates)
        try:
            s = ev.score(ev.embed(a, faces[0]), ev.embed(b, faces[1]))
            out.append(Score(name, ev.metric, s, ev.threshold.value, ev.is_match(s), role, note))
        except NoFaceError:
            out.append(Score(name, ev.metric, None, ev.threshold.value, None, role,
                             note + "; its detector found no face"))
    return out


__all__ = [
    "Score", "PipelineEvaluator", "DlibCppEvaluator", "available_evaluators", "get_evaluator",
    "compare_photos", "role_of", "FaceprotError", "ModelUnavailableError",
]
