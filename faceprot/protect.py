"""The protection pipeline that every method shares, in the order data flows:

    photo -> faces -> canonical face -> (the method's delta) -> paste back -> photo

* :func:`locate`: read the photo once (:mod:`faceprot.io`) and detect its faces once
  (:mod:`faceprot.faces`); the result is passed along, never detected again;
* :func:`protect_faces`: the per-face loop. For each chosen face it aligns the face into
  canonical space (:func:`faceprot.canonical.align`), asks the method for a delta there, and
  pastes it back at the photo's own resolution (:func:`faceprot.canonical.paste_back`);
* :class:`Protected`: the protected photo and what was done to it.

A method (the cloak in :mod:`faceprot.cloak`, later the disguise) only supplies the delta: it sees
canonical tensors ``(1, 3, S, S)`` in [0, 1] and returns ``(3, S, S)`` in the same units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .canonical import align, paste_back
from .faces import MIN_FACE_PX, Face, Selection, detect_faces, select_faces
from .io import ImageSource, Picture, encode_png, load_image

#: A method's edit of one face: (canonical face (1, 3, S, S) in [0, 1], face index) -> delta (3, S, S).
FaceEdit = Callable[[torch.Tensor, int], torch.Tensor]
#: How a face's edit goes into the photo: (photo (H, W, 3) uint8, face index, the edit's delta) ->
#: photo. Default: :func:`faceprot.canonical.paste_back` of the delta.
FacePaste = Callable[[np.ndarray, int, torch.Tensor], np.ndarray]


@dataclass
class Located:
    """A photo read once and its faces detected once.

    picture: the photo.  found: every face detected, left to right.
    chosen: the faces to work on (a subset of ``found``).  notices: what the user should know.
    """

    picture: Picture
    found: list[Face]
    chosen: list[Face]
    notices: list[str] = field(default_factory=list)


def as_picture(photo: ImageSource | Picture) -> Picture:
    """A :class:`Picture`, reading the photo only when it is not one already."""
    return photo if isinstance(photo, Picture) else load_image(photo)


def locate(photo: ImageSource | Picture, faces: Selection | Sequence[Face] = "largest", detector=None,
           *, found: list[Face] | None = None, min_px: int = MIN_FACE_PX) -> Located:
    """Read a photo and find the faces to work on, once.

    Args:
        photo: a path, bytes, PIL image, array or :class:`Picture`.
        faces: "largest", "all", face indices (0 = leftmost), or :class:`Face` records found
            earlier in this very photo (then nothing is detected again).
        detector: a detector object or name (default dlib's HOG detector).
        found: every face of the photo, when the caller has detected them already.
    Raises:
        NoFaceError with a readable message when no usable face is left.
    """
    pic = as_picture(photo)
    notices = list(pic.notices)
    if _is_faces(faces):
        chosen = list(faces)
        return Located(pic, list(found) if found is not None else chosen, chosen, notices)
    found = detect_faces(pic.rgb, detector) if found is None else list(found)
    chosen = select_faces(found, faces, min_px=min_px)
    if faces == "all" and len(chosen) < len(found):
        notices.append(f"{len(found) - len(chosen)} face(s) too small to protect were left as they are.")
    return Located(pic, found, chosen, notices)


def _is_faces(faces) -> bool:
    return isinstance(faces, (list, tuple)) and len(faces) > 0 and all(isinstance(f, Face) for f in faces)


@dataclass
class Protected:
    """A protected photo and what was done to it."""

    picture: Picture
    faces: list[Face]
    deltas: list[torch.Tensor] = field(default_factory=list)  # per face, (3, S, S) canonical units
    notices: list[str] = field(default_factory=list)

    def png(self) -> bytes:
        """The protected photo as a lossless PNG (see :func:`faceprot.io.encode_png`)."""
        return encode_png(self.picture)


def protect_faces(located: Located, edit: FaceEdit | torch.Tensor, paste: FacePaste | None = None) -> Protected:
    """Run a method's edit on every chosen face and paste each delta back into the photo.

    ``edit`` is a function of the aligned face, or one fixed delta (3, S, S) for every face (a
    universal mask as it is: then no face is aligned). Faces are handled one after another on
    the photo as it is being protected, so where two face regions overlap the second face is
    aligned from the already protected pixels. ``paste`` replaces the default paste-back of the
    delta where a method changes the photo in another way (the disguise's warp resamples the
    photo itself, at its own resolution).
    """
    out = located.picture.rgb
    deltas = []
    for i, f in enumerate(located.chosen):
        d = edit if isinstance(edit, torch.Tensor) else edit(align(out, f.transform), i)
        deltas.append(d)
        out = paste_back(out, f.transform, d) if paste is None else paste(out, i, d)
    return Protected(located.picture.with_rgb(out), located.chosen, deltas, list(located.notices))


def changed_region(picture: Picture, face: Face) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the photo box that protecting ``face`` may change (for close-ups)."""
    h, w = picture.rgb.shape[:2]
    return face.transform.region_bbox(w, h)


__all__ = ["Located", "locate", "as_picture", "Protected", "protect_faces", "FaceEdit", "FacePaste", "changed_region"]
