"""The personal cloak on real faces: enrollment, the mask file, application and the CLI."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from faceprot.canonical import paste_back, region_mask
from faceprot.cloak import MaskFileError, PersonalMask, apply_mask, enroll
from faceprot.errors import NoFaceError
from faceprot.faces import find_faces
from faceprot.io import load_image

# Small settings keep these tests fast; the benchmark runs the real presets.
FAST = dict(n_views=2, iterations=3)


def _people(manifest, identity):
    return [e["path"] for e in manifest if e["identity"] == identity]


@pytest.fixture(scope="module")
def obama(photos_manifest):
    return _people(photos_manifest, "obama")


@pytest.fixture(scope="module")
def enrolled(obama):
    # the paper's 10 iterations, so that P can reach the high budget; few views for speed
    return enroll(obama[0], seed=3, store_identity=True, n_views=2)


def test_budget_holds_pixel_by_pixel_on_the_output_photo(enrolled, obama):
    """Every output pixel moves by at most the mask's budget as mapped into the photo (plus 8-bit
    rounding), nothing outside the face region moves, and the larger sticker/edge budget is used."""
    mask = enrolled.mask
    for refine in (0, 2):
        pic = load_image(obama[1])
        out = apply_mask(pic, mask, refine=refine, seed=1).png()
        prot = load_image(out).rgb.astype(int)  # re-read the PNG a user would get
        clean = pic.rgb.astype(int)
        face = find_faces(pic.rgb)[0]
        t = face.transform
        diff = np.abs(prot - clean)
        inside = region_mask(clean.shape[:2], t)
        assert diff[~inside].max(initial=0) == 0
        # the budget map taken through the same paste-back as the delta: |warp(d)| <= warp(budget)
        grey = np.full(clean.shape, 128, np.uint8)
        bound = paste_back(grey, t, np.repeat(mask.budget[0][..., None], 3, -1) * 255).astype(int) - 128
        assert (diff <= bound + 1).all(), int((diff - bound).max())
        assert diff.max() > mask.eps * 255 + 1  # the high budget (stickers, edges) is really used
        assert diff.max() <= mask.eps_high * 255 + 1


def test_same_seed_same_mask_and_other_seed_differs(obama):
    a = enroll(obama[0], seed=7, **FAST).mask
    b = enroll(obama[0], seed=7, **FAST).mask
    c = enroll(obama[0], seed=8, **FAST).mask
    assert np.array_equal(a.delta, b.delta) and np.array_equal(a.budget, b.budget)
    assert not np.array_equal(a.delta, c.delta)
    # and applying is deterministic too, refinement included
    p1 = apply_mask(obama[1], a, refine=2, seed=5).png()
    p2 = apply_mask(obama[1], b, refine=2, seed=5).png()
    assert p1 == p2


def test_mask_file_holds_only_the_listed_tensors(enrolled, tmp_path):
    from safetensors import safe_open

    plain = PersonalMask(**{**enrolled.mask.__dict__, "identity": None})
    path = plain.save(tmp_path / "me.faceprot")
    with safe_open(str(path), "pt") as f:
        assert set(f.keys()) == {"delta", "budget"}
        meta = f.metadata()
    for key in ("format", "format_version", "canonical", "eps", "eps_high", "surrogates", "generator",
                "seed", "created"):
        assert meta[key], key
    assert json.loads(meta["surrogates"]) == enrolled.mask.surrogates
    assert path.read_bytes()[:8] != pickle.dumps(0)[:8]
    # the opt-in adds exactly one embedding per surrogate, nothing else
    opted = enrolled.mask.save(tmp_path / "me-id.faceprot")
    with safe_open(str(opted), "pt") as f:
        keys = set(f.keys())
    assert keys == {"delta", "budget"} | {f"identity.{s}" for s in enrolled.mask.surrogates}
    back = PersonalMask.load(opted)
    assert np.array_equal(back.delta, enrolled.mask.delta) and back.identity is not None
    # no face pixels: the tensors are the delta (within budget) and the budget map, not an image
    assert np.abs(back.delta).max() <= back.eps_high + 1e-6


def test_corrupt_foreign_and_future_mask_files_are_refused_clearly(enrolled, tmp_path):
    from safetensors.torch import save

    good = enrolled.mask.to_bytes()
    meta = enrolled.mask.metadata()
    cases = {
        "truncated": (good[: len(good) // 2], "not a readable faceprot mask"),
        "random": (np.random.default_rng(0).bytes(5000), "not a readable faceprot mask"),
        "pickle": (pickle.dumps({"delta": np.zeros(3)}), "not a readable faceprot mask"),
        "empty": (b"", "not a readable faceprot mask"),
        "foreign": (save({"weight": torch.zeros(4, 4)}, metadata={"format": "pt"}), "not a faceprot mask"),
        "future": (save(enrolled.mask.tensors(), metadata={**meta, "format_version": "99"}), "newer faceprot"),
        "altered": (save({**enrolled.mask.tensors(), "delta": torch.ones(3, 256, 256)}, metadata=meta),
                    "larger than its own budget"),
        "extra tensor": (save({**enrolled.mask.tensors(), "face": torch.zeros(3, 256, 256)}, metadata=meta),
                         "does not hold the tensors"),
    }
    for name, (data, message) in cases.items():
        p = tmp_path / f"{name.replace(' ', '-')}.faceprot"
        p.write_bytes(data)
        with pytest.raises(MaskFileError, match=message):
            PersonalMask.load(p)
    with pytest.raises(MaskFileError, match="does not exist"):
        PersonalMask.load(tmp_path / "missing.faceprot")


def test_teaching_maps_are_displayable(enrolled):
    maps = enrolled.teaching_maps()
    assert set(maps) == {"stickers", "high-pass", "attention", "mask (amplified)"}
    for img in maps.values():
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8 and img.std() > 0
    assert 0 < enrolled.focus.stickers.mean() < 0.5


def test_apply_only_to_faces_that_are_me(enrolled, obama, photos_manifest):
    out = apply_mask(obama[2], enrolled.mask, faces="me")
    assert len(out.faces) == 1
    biden = _people(photos_manifest, "biden")[0]
    with pytest.raises(NoFaceError):
        apply_mask(biden, enrolled.mask, faces="me")
    no_id = PersonalMask(**{**enrolled.mask.__dict__, "identity": None})
    with pytest.raises(Exception, match="does not store your identity"):
        apply_mask(obama[2], no_id, faces="me")


def test_cli_enroll_then_apply_to_a_folder_with_one_broken_file(obama, tmp_path, capsys):
    import shutil

    from faceprot.cli import main

    mask = tmp_path / "me.faceprot"
    assert main(["enroll", obama[0], "-o", str(mask), "--views", "2", "--seed", "1"]) == 0
    assert "saved" in capsys.readouterr().out
    assert main(["enroll", obama[0], "-o", str(mask)]) == 2  # never overwrites silently
    assert "already exists" in capsys.readouterr().err
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in obama[1:3]:
        shutil.copy(p, photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    rc = main(["apply", str(mask), str(photos), "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 1
    assert "FAIL" in captured.out and "broken.jpg" in captured.out
    assert "2 of 3 photo(s) protected" in captured.out
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{__import__('pathlib').Path(p).stem}-protected.png" for p in obama[1:3])
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["apply", str(tmp_path / "nope.faceprot"), str(photos), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
