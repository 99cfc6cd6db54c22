"""The warp engine of the emotion disguise (issue 15, item 4): `disguise()` on a real LFW face.

The hard limits are re-measured on the output, not read from the engine's own report: landmark
moves from the displacements, the Jacobian determinant of the warp they make, and the additive
part in the pasted photo (the output minus the warp-only photo).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT
from faceprot.canonical import align, region_mask, to_pictures
from faceprot.disguise.engine import (
    DIRECTIONS, OFFERED, STRENGTHS, EmotionError, check_emotion, disguise, expression_basis, face_region,
    paste_warp,
)
from faceprot.disguise.warp import (
    MAX_MOVE, MIN_DET, eye_frame, interocular_distance, jacobian_determinant, template_displacements, warp_grid,
)
from faceprot.errors import FaceprotError, NoFaceError

pytestmark = pytest.mark.usefixtures("faceprot_threads")

ARTIFACTS = ROOT / "test-artifacts"
FEW = 6  # steps for the runs that check behaviour rather than the look


@pytest.fixture(scope="module")
def lfw_picture(lfw_manifest):
    from faceprot.io import load_image

    return load_image(lfw_manifest[0]["path"])


@pytest.fixture(scope="module")
def dodged(lfw_picture):
    """The default disguise (happy, dodging, medium, 40 steps, both default surrogates)."""
    from faceprot.runtime import default_threads

    before = torch.get_num_threads()  # a module fixture runs before the per-test thread fixture
    torch.set_num_threads(default_threads())
    try:
        return disguise(lfw_picture, "happy", seed=0)
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------
# The expression space and the emotions offered
# ------------------------------------------------------------------------------------------------


def test_the_basis_starts_from_the_template_and_splits_it_anatomically(lfw_picture):
    from faceprot.faces import find_faces

    pts = torch.from_numpy(find_faces(lfw_picture.rgb)[0].canonical_landmarks)[None]
    basis, names = expression_basis(pts, "happy")
    assert names == DIRECTIONS and basis.shape == (1, 5, 68, 2)
    assert torch.allclose(basis[:, 0], template_displacements(pts, "happy"), atol=1e-9)
    template, left, right, upper, width = basis[0]
    mouth = list(range(48, 68))
    assert torch.allclose(left[mouth] + right[mouth] + upper[mouth], left[mouth] + right[mouth])  # upper: no mouth
    assert (left[54].abs().sum() == 0) and (right[48].abs().sum() == 0)  # each corner on its own side
    assert left[48, 1] < 0 and right[54, 1] < 0  # corners pulled up (y is down) ...
    assert left[48, 0] < 0 < right[54, 0]  # ... and out
    # width: the corners go out along the eye line (the face may be turned a little in the square)
    frame = eye_frame(pts)[0]
    assert torch.allclose((width @ frame)[:, 1], torch.zeros(68, dtype=width.dtype), atol=1e-9)
    assert upper[2, 1] < 0 and upper[14, 1] < 0  # cheeks up (AU6)
    # the directions are displacements of a few percent of the face, not free moves
    iod = float(interocular_distance(pts))
    assert float(basis.norm(dim=-1).max()) / iod < MAX_MOVE


def test_only_emotions_the_measure_supports_are_offered():
    assert OFFERED == ("happy",)
    assert check_emotion("happy") == "happy"
    with pytest.raises(EmotionError, match="'joy'.*offers: happy"):
        check_emotion("joy")
    with pytest.raises(EmotionError, match="does not offer 'sad'.*offers: happy"):
        check_emotion("sad")
    assert issubclass(EmotionError, FaceprotError)


# ------------------------------------------------------------------------------------------------
# The default disguise of a real face
# ------------------------------------------------------------------------------------------------


def _save_artifacts(picture, result, name: str) -> None:
    """Before | after photos, the face 2x (before | warp only | after), and the canonical faces
    (clean | warp only | final | additive x 16 around grey), to test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    before, after, warp_only = picture.rgb, result.picture.rgb, result.warp_only.rgb
    cv2.imwrite(str(ARTIFACTS / f"{name}.png"), np.concatenate([before, after], 1)[..., ::-1])
    f = result.faces[0]
    x0, y0, x1, y1 = (int(round(v)) for v in f.face.box)
    pad = (x1 - x0) // 6
    x0, y0 = max(x0 - pad, 0), max(y0 - pad, 0)
    crops = [cv2.resize(np.ascontiguousarray(im[y0:y1 + pad, x0:x1 + pad]), None, fx=2, fy=2,
                        interpolation=cv2.INTER_CUBIC) for im in (before, warp_only, after)]
    gap = np.full((crops[0].shape[0], 4, 3), 255, np.uint8)
    cv2.imwrite(str(ARTIFACTS / f"{name}-face-2x.png"),
                np.concatenate([crops[0], gap, crops[1], gap, crops[2]], 1)[..., ::-1])
    amplified = (0.5 + 16 * f.additive).clamp(0, 1)
    canon = to_pictures(torch.stack([f.clean, f.warp_only, f.final, amplified]))
    cv2.imwrite(str(ARTIFACTS / f"{name}-canonical.png"), np.concatenate(list(canon), 1)[..., ::-1])


@pytest.mark.slow
def test_hard_limits_hold_on_the_output(lfw_picture, dodged):
    f = dodged.faces[0]
    pts, d = f.points[None].double(), f.displacements[None].double()
    moves = d.norm(dim=-1) / interocular_distance(pts)
    det = jacobian_determinant(warp_grid(pts, d))
    eps = STRENGTHS["medium"]
    assert float(moves.max()) <= MAX_MOVE + 1e-9
    assert float(det.min()) > MIN_DET
    assert float(f.additive.abs().max()) <= eps + 1e-6
    off_face = torch.from_numpy(face_region(f.points.numpy())) == 0
    assert off_face.sum() > 10_000 and float(f.additive[:, off_face].abs().max()) == 0  # none on the wall
    # in the photo: the output minus the warp-only photo, both pasted and rounded to 8 bits
    diff = np.abs(dodged.picture.rgb.astype(int) - dodged.warp_only.rgb.astype(int))
    assert diff.max() <= eps * 255 + 1
    # the warp did move the landmarks, and the additive part is there
    assert float(moves.max()) > 0.03 and diff.max() >= 2
    print(f"max move {float(moves.max()):.3f} IOD, min det {float(det.min()):.2f}, "
          f"additive {diff.max()} levels in the photo; coefficients {f.coefficients}; "
          f"p(happy) {f.p_emotion}; similarity {f.similarity}; {f.seconds:.1f} s")
    _save_artifacts(lfw_picture, dodged, "disguise-happy")


@pytest.mark.slow
def test_only_the_face_square_changes(lfw_picture, dodged):
    before, after = lfw_picture.rgb, dodged.picture.rgb
    assert after.shape == before.shape and after.dtype == np.uint8
    outside = ~region_mask(before.shape[:2], dodged.faces[0].face.transform)
    assert outside.any() and np.array_equal(after[outside], before[outside])
    assert not np.array_equal(after, before)
    assert dodged.png()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_dodging_lowers_the_similarity_to_the_clean_face_below_the_warp_alone(lfw_picture, dodged):
    """Re-measured on the photos as they come out (pasted, rounded), aligned like the input."""
    from faceprot.attack import similarity
    from faceprot.recognizers import load_surrogate

    s = load_surrogate("dlib-resnet")
    transform = dodged.faces[0].face.transform
    x = torch.cat([align(im, transform) for im in (lfw_picture.rgb, dodged.warp_only.rgb, dodged.picture.rgb)])
    with torch.no_grad():
        emb = s(x)
        sims = similarity(s, emb[1:], emb[0])
    print(f"dlib-resnet similarity to the clean face (-L2 / threshold): warp only {float(sims[0]):.3f}, "
          f"final {float(sims[1]):.3f}")
    assert float(sims[1]) < float(sims[0]) - 0.1
    rec = dodged.faces[0].similarity["dlib-resnet"]
    assert rec["final"] < rec["warp_only"]


def test_paste_warp_of_no_move_is_the_photo_bit_for_bit_and_a_move_stays_in_the_square(lfw_picture):
    from faceprot.faces import find_faces

    face = find_faces(lfw_picture.rgb)[0]
    pts = torch.from_numpy(face.canonical_landmarks)
    rgb = lfw_picture.rgb
    assert np.array_equal(paste_warp(rgb, face.transform, pts, torch.zeros_like(pts)), rgb)
    moved = paste_warp(rgb, face.transform, pts, template_displacements(pts, "happy"))
    outside = ~region_mask(rgb.shape[:2], face.transform)
    assert np.array_equal(moved[outside], rgb[outside]) and not np.array_equal(moved, rgb)


# ------------------------------------------------------------------------------------------------
# Reproducibility and the separation of the two objectives
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_seed_same_bytes_another_seed_differs(lfw_picture):
    runs = [disguise(lfw_picture, seed=s, steps=FEW, surrogates=["dlib-resnet"]) for s in (0, 0, 1)]
    assert runs[0].png() == runs[1].png()
    assert runs[0].png() != runs[2].png()


@pytest.mark.slow
def test_expression_gradients_never_reach_the_additive_perturbation(lfw_picture):
    """With the identity weight at zero (and no random start) only the expression loss acts: it
    moves the warp's coefficients, and the additive part stays exactly zero."""
    r = disguise(lfw_picture, seed=0, steps=FEW, surrogates=["dlib-resnet"], identity_weight=0.0,
                 random_start=False)
    f = r.faces[0]
    assert float(f.additive.abs().max()) == 0.0
    assert np.array_equal(r.picture.rgb, r.warp_only.rgb)
    start = np.zeros(len(f.coefficients))
    start[0] = 1
    assert np.abs(np.array(list(f.coefficients.values())) - start).max() > 0.05
    assert f.losses[-1]["expression"] < f.losses[0]["expression"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sum", "gradvac"])
def test_projection_modes_run(lfw_picture, mode):
    r = disguise(lfw_picture, seed=0, steps=FEW, surrogates=["dlib-resnet"], projection=mode)
    f = r.faces[0]
    assert len(f.losses) == FEW and all(np.isfinite(s["expression"]) for s in f.losses)
    assert f.max_move_iod <= MAX_MOVE + 1e-9 and f.min_det > MIN_DET


@pytest.mark.slow
def test_impersonation_moves_towards_the_target(lfw_picture, lfw_manifest):
    other = next(e for e in lfw_manifest if e["identity"] != lfw_manifest[0]["identity"])
    r = disguise(lfw_picture, target=other["path"], seed=0, steps=FEW, surrogates=["dlib-resnet"])
    rec = r.faces[0].similarity["dlib-resnet"]
    assert r.target and rec["final"] > rec["warp_only"]


@pytest.mark.slow
def test_faces_me_picks_the_person_of_the_reference_photo(lfw_picture, lfw_manifest):
    me = lfw_manifest[0]
    same = next(e for e in lfw_manifest[1:] if e["identity"] == me["identity"])
    other = next(e for e in lfw_manifest if e["identity"] != me["identity"])
    r = disguise(lfw_picture, faces="me", me=same["path"], steps=1, surrogates=["dlib-resnet"])
    assert len(r.faces) == 1
    with pytest.raises(NoFaceError, match="None of the faces"):
        disguise(lfw_picture, faces="me", me=other["path"], steps=1, surrogates=["dlib-resnet"])
    with pytest.raises(FaceprotError, match="needs a photo of you"):
        disguise(lfw_picture, faces="me", steps=1)


@pytest.mark.slow
def test_faces_me_in_a_group_is_scored_on_my_face_not_the_largest(lfw_picture, lfw_manifest):
    """A group photo where "me" is not the largest face: the disguise edits only my face, and the
    scores and the expression judges read my face in the output, never the larger stranger's."""
    import cv2

    from faceprot.disguise.scores import same_face, score_disguise
    from faceprot.evaluators import compare_photos
    from faceprot.faces import find_faces
    from faceprot.io import load_image

    me = lfw_manifest[0]
    same = next(e for e in lfw_manifest[1:] if e["identity"] == me["identity"])
    other = next(e for e in lfw_manifest if e["identity"] != me["identity"])
    a = lfw_picture.rgb
    b = cv2.resize(load_image(other["path"]).rgb, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_CUBIC)
    pad = lambda x: np.pad(x, ((0, b.shape[0] - x.shape[0]), (0, 0), (0, 0)), constant_values=128)  # noqa: E731
    group = np.ascontiguousarray(np.concatenate([pad(a), b], axis=1))
    r = disguise(group, faces="me", me=same["path"], steps=1, surrogates=["dlib-resnet"])
    mine = r.faces[0].face
    assert len(r.faces) == 1 and mine.box[2] <= a.shape[1]  # my face, on the left
    out = r.picture.rgb
    assert find_faces(out)[0].box[0] >= a.shape[1]  # the largest face in the output is the stranger's
    assert not np.any(out[:, a.shape[1]:] != group[:, a.shape[1]:])  # left untouched
    found = same_face(out, mine)
    assert found is not None and found.box[2] <= a.shape[1]
    scores = {s.evaluator: s for s in score_disguise(r, group).self}
    mine_again = {s.evaluator: s for s in compare_photos(group, out, evaluators=["dlib-resnet"],
                                                          face_a=mine, face_b=found)}
    stranger = {s.evaluator: s for s in compare_photos(group, out, evaluators=["dlib-resnet"], face_a=mine)}
    assert scores["dlib-resnet"].score == pytest.approx(mine_again["dlib-resnet"].score)
    assert abs(scores["dlib-resnet"].score - stranger["dlib-resnet"].score) > 0.2


# ------------------------------------------------------------------------------------------------
# Errors a user can cause
# ------------------------------------------------------------------------------------------------


def test_unknown_and_unsupported_emotions_are_refused(lfw_picture):
    with pytest.raises(EmotionError, match="Unknown emotion 'joy'"):
        disguise(lfw_picture, "joy")
    with pytest.raises(EmotionError, match="does not offer 'sad'"):
        disguise(lfw_picture, "sad")
    with pytest.raises(FaceprotError, match="Unknown strength"):
        disguise(lfw_picture, strength="extreme")


def test_a_photo_without_a_face_is_refused():
    with pytest.raises(NoFaceError, match="No face was found"):
        disguise(np.full((160, 160, 3), 128, np.uint8), steps=1)


def test_a_target_without_a_face_is_refused(lfw_picture):
    with pytest.raises(NoFaceError, match="The target photo has no usable face"):
        disguise(lfw_picture, target=np.full((160, 160, 3), 128, np.uint8), steps=1)


@pytest.mark.slow
def test_cli_disguises_a_folder_with_one_broken_file_and_refuses_bad_emotions(tmp_path, capsys, lfw_manifest):
    """`faceprot disguise FOLDER --emotion happy`: the good photos are written as PNGs named after
    them, the broken one is named in a FAIL line, the exit status is 1; an unoffered emotion and a
    single-file output work as the help says."""
    import shutil

    from faceprot.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    people = list(dict.fromkeys(e["identity"] for e in lfw_manifest))[:2]
    firsts = [next(e for e in lfw_manifest if e["identity"] == p) for p in people]
    for e in firsts:
        shutil.copy(e["path"], photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    rc = main(["disguise", str(photos), "--emotion", "happy", "--steps", "3", "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 1, captured
    assert "FAIL" in captured.out and "broken.jpg" in captured.out
    assert "2 of 3 photo(s) disguised" in captured.out
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{Path(e['path']).stem}-happy.png" for e in firsts)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in out.iterdir())
    assert main(["disguise", str(photos), "--emotion", "sad", "-o", str(out)]) == 2
    assert "does not offer 'sad'" in capsys.readouterr().err
    one = tmp_path / "me-happy.png"
    assert main(["disguise", firsts[0]["path"], "--steps", "2", "-o", str(one)]) == 0
    assert one.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["disguise", firsts[0]["path"], "--steps", "2", "-o", str(one)]) == 1  # never overwrites silently
    assert "already exists" in capsys.readouterr().out
    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), np.full((200, 300, 3), 170, np.uint8))
    assert main(["disguise", str(photos), "--target", str(wall), "-o", str(out)]) == 2  # before any photo
    assert "The target photo wall.png has no usable face" in capsys.readouterr().err


def test_cli_diffusion_without_a_gpu_falls_back_to_warp_with_a_note(tmp_path, capsys, lfw_manifest):
    """`faceprot disguise --engine diffusion` on a machine without a GPU (or its weights): the
    photo is disguised by the warp engine, stderr says why in the app's sentence, exit status 0."""
    from faceprot.cli import main
    from faceprot.disguise import diffusion

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: this test is about a machine without one")
    out = tmp_path / "me-happy.png"
    rc = main(["disguise", lfw_manifest[0]["path"], "--engine", "diffusion", "--steps", "1", "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured
    assert f"note: {diffusion.why_not_offered(gpu=False)} Using the warp engine instead." in captured.err
    assert "it needs a GPU, and there is none here" in captured.err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "1 of 1 photo(s) disguised" in captured.out
    with pytest.raises(SystemExit):
        main(["disguise", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--engine {warp,diffusion}" in help_text and "experimental: its quality has not been measured" in help_text
    assert "Without them the warp engine runs instead and a note on stderr says why" in help_text

def test_landmarks_that_are_not_a_face_are_refused_with_a_sentence(lfw_picture):
    """check_landmarks on real landmarks passes; squeezed eyes (a profile's layout) and a mouth
    outside the square are refused with LandmarkError, a NoFaceError the app and CLI word."""
    from faceprot.disguise.engine import LandmarkError, check_landmarks
    from faceprot.faces import find_faces

    face = find_faces(lfw_picture.rgb)[0]
    assert check_landmarks(face).shape == (68, 2)
    squeezed = face.canonical_landmarks.copy()
    squeezed[:, 0] = 128 + (squeezed[:, 0] - 128) * 0.3  # eyes 0.3x as far apart: a profile
    mouth_out = face.canonical_landmarks.copy()
    mouth_out[48:68, 1] += 200
    for bad in (squeezed, mouth_out):  # check_landmarks reads only these two of a Face
        broken = SimpleNamespace(canonical_landmarks=bad, describe=face.describe)
        with pytest.raises(LandmarkError, match="could not be found reliably"):
            check_landmarks(broken)
    assert issubclass(LandmarkError, NoFaceError)


@pytest.mark.slow
def test_the_ablation_rows_switch_off_one_part_each(lfw_picture):
    """The benchmark's rows: warp=False leaves the geometry alone (no landmark moves); eps=0
    leaves the pixels to the warp alone (no additive part)."""
    pert = disguise(lfw_picture, seed=0, steps=FEW, surrogates=["dlib-resnet"], warp=False).faces[0]
    assert float(pert.displacements.abs().max()) == 0.0 and pert.additive_linf > 0
    assert all(v == 0 for v in pert.coefficients.values())
    warp = disguise(lfw_picture, seed=0, steps=FEW, surrogates=["dlib-resnet"], eps=0.0).faces[0]
    assert warp.additive_linf == 0.0 and float(warp.displacements.abs().max()) > 0


@pytest.mark.slow
def test_a_built_in_target_is_impersonated_while_moving_away_from_the_owner(lfw_picture):
    from faceprot.disguise.gallery import load_target

    target = load_target("blend A")
    r = disguise(lfw_picture, target=target, seed=0, steps=FEW, surrogates=["dlib-resnet"])
    rec = r.faces[0].similarity["dlib-resnet"]
    assert r.target and rec["final"] > rec["warp_only"]  # towards the blend
    plain = disguise(lfw_picture, target=target, seed=0, steps=FEW, surrogates=["dlib-resnet"], identity_weight=0.0)
    own = lambda res: float(res.faces[0].losses[-1]["similarity"]["dlib-resnet"])  # noqa: E731
    assert own(r) > own(plain)  # the similarity to the target rose more than without identity
    with pytest.raises(FaceprotError, match="no embedding for"):
        disguise(lfw_picture, target={"dlib-resnet": target["dlib-resnet"]}, surrogates=["mobilefacenet"], steps=1)


def test_the_built_in_targets_are_blends_of_three_or_more_people():
    from faceprot.disguise import gallery

    assert gallery.TARGETS_FILE.is_file()
    for name in gallery.names():
        assert len(set(gallery.MEMBERS[name])) >= 3
        t = gallery.load_target(name)
        assert set(t) == set(gallery.RECOGNIZERS)
        assert all(np.isfinite(v).all() and v.ndim == 1 for v in t.values())
        assert gallery.load_target(gallery.label(name))["dlib-cpp"].tolist() == t["dlib-cpp"].tolist()
    with pytest.raises(FaceprotError, match="Unknown target"):
        gallery.load_target("Tom Cruise")


@pytest.mark.slow
def test_the_shipped_targets_are_what_the_build_makes_from_the_photos(tmp_path):
    from conftest import shared_path
    from faceprot.disguise import gallery

    photos = shared_path("assets", "faces", "photos")
    gallery.build(photos, tmp_path / "targets.npz")
    for name in gallery.names():
        shipped = gallery.load_target(name)
        with np.load(tmp_path / "targets.npz") as z:
            for rec in gallery.RECOGNIZERS:
                assert np.allclose(z[f"{name}/{rec}"], shipped[rec], atol=1e-5), (name, rec)


@pytest.mark.slow
def test_scores_read_the_output_photo_and_the_arrows_show_the_moves(lfw_picture, dodged):
    from faceprot.disguise.scores import score_disguise, warp_arrows

    scores = score_disguise(dodged, lfw_picture.rgb)
    assert {s.evaluator for s in scores.self} >= {"dlib-cpp", "dlib-resnet", "mobilefacenet"}
    assert {s.role for s in scores.self if s.evaluator == "dlib-resnet"} == {"white-box"}
    assert scores.target == []
    judges = [e.judge for e in scores.expression]
    assert judges[0] == "expression" and judges[-1] == "landmarks"
    arrows = warp_arrows(dodged)
    plain = warp_arrows(dodged, gain=0.0)
    assert arrows.shape == (512, 512, 3) and (arrows != plain).any()  # arrows drawn where landmarks moved
