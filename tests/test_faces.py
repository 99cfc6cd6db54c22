"""Face detection, landmarks, selection, and the messages users see when a photo won't do."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceprot.errors import NoFaceError
from faceprot.faces import MIN_FACE_PX, detect_faces, find_faces, points5_from_68, select_faces
from faceprot.io import load_image


def _rgb(entry):
    return load_image(entry["path"]).rgb


def _group(lfw_manifest, scales=(1.0, 1.0, 1.0)):
    """Three different LFW people side by side, each tile scaled."""
    seen, tiles = set(), []
    for e in lfw_manifest:
        if e["identity"] not in seen and len(tiles) < len(scales):
            seen.add(e["identity"])
            t = _rgb(e)
            s = scales[len(tiles)]
            tiles.append(cv2.resize(t, None, fx=s, fy=s, interpolation=cv2.INTER_AREA))
    h = max(t.shape[0] for t in tiles)
    padded = [np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0)), constant_values=128) for t in tiles]
    return np.concatenate(padded, axis=1)


def test_face_record_carries_box_68_points_and_the_five(lfw_manifest):
    face = find_faces(_rgb(lfw_manifest[0]))[0]
    assert face.box.shape == (4,) and face.landmarks68.shape == (68, 2) and face.points5.shape == (5, 2)
    le, re, nose, lm, rm = face.points5
    assert le[0] < nose[0] < re[0] and lm[0] < rm[0]  # image-left first, as in the template
    assert le[1] < nose[1] < lm[1]
    np.testing.assert_allclose(face.points5[0], face.landmarks68[36:42].mean(0))
    np.testing.assert_allclose(points5_from_68(face.landmarks68)[2], face.landmarks68[30])
    x0, y0, x1, y1 = face.box
    inside = (face.landmarks68[:, 0] > x0 - 10) & (face.landmarks68[:, 0] < x1 + 10)
    assert inside.mean() > 0.9


def test_no_face_gives_a_clear_message():
    rng = np.random.default_rng(0)
    blank = cv2.GaussianBlur(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), (0, 0), 4)
    with pytest.raises(NoFaceError, match="No face was found"):
        find_faces(blank)


def test_a_one_pixel_rgba_picture_is_searched_not_refused_by_dlib():
    """The RGB of a 1x1 RGBA picture keeps a pixel stride of 4, which numpy still calls
    contiguous; dlib refused it with a RuntimeError about strides. Found by tests/test_fuzz.py
    (make_case(1014, 760): a 1x1 RGBA WebP with EXIF orientation 4)."""
    import io

    from PIL import ExifTags, Image

    rgba = np.array([[[10, 20, 30, 40]]], dtype=np.uint8)
    with pytest.raises(NoFaceError, match="No face was found"):
        find_faces(rgba[..., :3])
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 4
    data = io.BytesIO()
    Image.fromarray(rgba).save(data, format="PNG", exif=exif)
    pic = load_image(data.getvalue())
    assert pic.rgb.strides == (3, 3, 1) and pic.alpha.tolist() == [[40]]
    with pytest.raises(NoFaceError, match="No face was found"):
        find_faces(pic.rgb)


@pytest.mark.parametrize("shape", [(1, 60937), (3000, 1)])
def test_a_long_thin_strip_has_no_face_and_no_resize_error(shape):
    """A picture far longer than wide (here as a damaged GIF claimed to be: 60937x1) was shrunk
    for the detector to 1024x0 pixels, and cv2.resize raised. Found by tests/test_fuzz.py
    (make_case(7, 255))."""
    strip = np.full((*shape, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="No face was found"):
        find_faces(strip)


def test_several_faces_default_to_the_largest_and_can_be_chosen(lfw_manifest):
    group = _group(lfw_manifest, scales=(1.0, 1.4, 1.0))
    faces = detect_faces(group)
    assert len(faces) == 3
    centres = [(f.box[0] + f.box[2]) / 2 for f in faces]
    assert centres == sorted(centres)  # numbered left to right
    largest = select_faces(faces)
    assert len(largest) == 1 and largest[0] is faces[1]  # the scaled-up middle tile
    assert select_faces(faces, "all") == faces
    assert select_faces(faces, [0, 2]) == [faces[0], faces[2]]
    assert select_faces(faces, 2) == [faces[2]]
    with pytest.raises(NoFaceError, match=r"numbered 0 to 2"):
        select_faces(faces, [5])


def test_small_face_found_by_upsampling_and_tiny_face_refused_clearly(lfw_manifest):
    rgb = _rgb(lfw_manifest[0])
    face = find_faces(rgb)[0]

    def shrunk(width):
        f = width / face.width
        small = cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        canvas = np.full((480, 640, 3), 120, np.uint8)
        canvas[150:150 + small.shape[0], 200:200 + small.shape[1]] = small
        return canvas

    # a 50 px face needs upsampling to be found by HOG (its window is 80 px), and is usable
    small = find_faces(shrunk(50))
    assert len(small) == 1 and MIN_FACE_PX <= small[0].width < 70
    # a 25 px face is found but refused, with a message that says why and what to do
    with pytest.raises(NoFaceError) as e:
        find_faces(shrunk(25))
    msg = str(e.value)
    assert "too small" in msg and f"{MIN_FACE_PX} px" in msg


def test_retinaface_is_a_pluggable_detector_with_the_same_face_record(lfw_manifest):
    errs = []
    for e in lfw_manifest[3:120:13]:
        rgb = _rgb(e)
        hog = find_faces(rgb)[0]
        rf = find_faces(rgb, detector="retinaface")[0]
        assert rf.detector == "retinaface" and rf.landmarks68.shape == (68, 2)
        iod = np.linalg.norm(hog.points5[0] - hog.points5[1])
        errs.append(np.abs(hog.points5 - rf.points5).max() / iod)
    # landmarks from a RetinaFace box land where they land from dlib's own box
    assert np.median(errs) < 0.06, errs


def test_unknown_detector_and_selection_are_refused():
    from faceprot.faces import get_detector

    with pytest.raises(ValueError, match="Unknown face detector"):
        get_detector("yolo")
    with pytest.raises(ValueError, match="largest"):
        select_faces([object()], "biggest")  # type: ignore[list-item]
