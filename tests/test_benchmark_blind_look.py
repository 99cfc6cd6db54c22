"""Smoke test of benchmarks/cloak_blind_look.py: both modes (make, score) on one LFW and one
real-size pair per preset."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from conftest import ROOT, shared_path

sys.path.insert(0, str(ROOT / "benchmarks"))
import cloak_blind_look  # noqa: E402
from faceprot.io import load_image  # noqa: E402


def test_make_then_score(tmp_path, faceprot_threads):
    shared_path("assets", "faces", "lfw")
    shared_path("assets", "faces", "photos")
    out, key = tmp_path / "look", tmp_path / "key"
    assert cloak_blind_look.main(["make", "--presets", "v2x0.5,paper", "--out", str(out), "--key", str(key),
                                  "--lfw", "1", "--lfw-start", "100", "--real", "1", "--page", "200",
                                  "--crop", "300"]) == 0
    k = json.loads((key / "key.json").read_text())
    assert len(k["pairs"]) == 4 and k["refine"] == 10
    assert {(p["preset"], p["source"]) for p in k["pairs"].values()} == {
        (pr, s) for pr in ("v2x0.5", "paper") for s in ("lfw", "real-size")}
    # no photo is in two pairs (its clean version would give both away): the presets get other
    # LFW people, and other photos of the same real-size person
    photos = [(p["identity"], p["photo"]) for p in k["pairs"].values()]
    assert len(set(photos)) == 4 and len({p["identity"] for p in k["pairs"].values() if p["source"] == "lfw"}) == 2
    sheet = (out / "sheet.md").read_text()
    # the reviewer's folder says nothing of which is which, nor of the preset or the person
    for p in k["pairs"].values():
        assert p["identity"] not in sheet and p["photo"] not in sheet
    assert "v2x" not in sheet and "paper" not in sheet
    assert sorted(f.name for f in out.iterdir() if f.suffix != ".md") == sorted(re.findall(r"`(\w+\.png)`", sheet))
    for n, p in k["pairs"].items():
        page_line, full_line = (ln for ln in sheet.splitlines() if ln.startswith(f"- pair {n}:"))
        page = [load_image(out / f).rgb for f in re.findall(r"`(\w+\.png)`", page_line)]
        full = [load_image(out / f).rgb for f in re.findall(r"`(\w+\.png)`", full_line)]
        assert full[0].shape == full[1].shape and page[0].shape == page[1].shape
        assert max(page[0].shape[:2]) <= 200 < max(full[0].shape[:2]) or p["source"] == "lfw"
        assert max(full[0].shape[:2]) <= 300  # the 100% square, at most --crop wide
        if p["source"] == "real-size":  # this face is wider than that: its central part, cut at --crop
            assert full[0].shape[:2] == (300, 300)
        # the two versions differ, in both views, but not in their files' sizes or times
        assert not np.array_equal(full[0], full[1]) and not np.array_equal(page[0], page[1])
        for line in (page_line, full_line):
            stats = [(out / f).stat() for f in re.findall(r"`(\w+\.png)`", line)]
            assert stats[0].st_size == stats[1].st_size and stats[0].st_mtime == stats[1].st_mtime
    assert sheet.index("Part 1: page size") < sheet.index("Part 2: at 100%")
    # score: all right (a flat answer counts as the final one), then page and full apart
    right = {n: p["protected"] for n, p in k["pairs"].items()}
    (tmp_path / "a.json").write_text(json.dumps(right))
    assert cloak_blind_look.main(["score", "--answers", str(tmp_path / "a.json"), "--key", str(key)]) == 0
    s = json.loads((key / "score.json").read_text())
    assert s["full/v2x0.5/all"] == {"hits": 2, "pairs": 2, "rate": 1.0} and s["full/paper/lfw"]["rate"] == 1.0
    wrong = {n: 3 - v for n, v in right.items()}
    (tmp_path / "b.json").write_text(json.dumps({"page": wrong, "full": right}))
    cloak_blind_look.main(["score", "--answers", str(tmp_path / "b.json"), "--key", str(key)])
    s = json.loads((key / "score.json").read_text())
    assert s["page/v2x0.5/all"]["rate"] == 0.0 and s["page/paper/all"]["hits"] == 0
    assert s["full/v2x0.5/all"]["rate"] == 1.0
    with pytest.raises(SystemExit, match="unknown preset"):
        cloak_blind_look.main(["make", "--presets", "strong", "--out", str(out), "--key", str(key)])
    # a missing answer is refused; the key inside the reviewer's folder is refused
    (tmp_path / "c.json").write_text(json.dumps({"1": 1}))
    with pytest.raises(SystemExit):
        cloak_blind_look.main(["score", "--answers", str(tmp_path / "c.json"), "--key", str(key)])
    with pytest.raises(SystemExit):
        cloak_blind_look.main(["make", "--out", str(out), "--key", str(out / "k"), "--lfw", "1", "--real", "0"])


def test_same_size_pads_without_touching_the_pixels():
    """A noisier picture compresses worse; padding makes a pair's files equally long, and every
    reader still gets the same pixels (the chunk is a valid ancillary one, its CRC checked)."""
    import io

    from PIL import Image

    from faceprot.io import encode_png

    rng = np.random.default_rng(0)
    smooth = np.tile(np.arange(64, dtype=np.uint8)[None, :, None], (48, 1, 3))
    noisy = np.clip(smooth.astype(int) + rng.integers(-3, 4, smooth.shape), 0, 255).astype(np.uint8)
    raw = [encode_png(smooth), encode_png(noisy)]
    assert len(raw[0]) < len(raw[1])  # the giveaway padding removes
    padded = cloak_blind_look.same_size(raw)
    assert len(padded[0]) == len(padded[1]) > len(raw[1])
    for data, rgb in zip(padded, (smooth, noisy)):
        Image.open(io.BytesIO(data)).verify()  # checks every chunk's CRC
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), rgb)
        assert data.count(cloak_blind_look.PAD_CHUNK) == 1
    with pytest.raises(ValueError, match="PNG"):
        cloak_blind_look.same_size([raw[0], b"not a png"])
