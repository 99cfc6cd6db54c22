"""The perceptual budget (cloak v2, issue 16): a luminance/chroma box scaled by texture, low in the
eyes, kept pixel by pixel on the output photo; v1 masks still apply as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faceprot.attack import YCBCR_FROM_RGB, BudgetSpace
from faceprot.canonical import FaceTransform, align, paste_back, region_mask, to_photo, to_pictures
from faceprot.cloak import PRESETS, STRENGTHS, MaskFileError, PerceptualBudget, PersonalMask, apply_mask, config_for, enroll
from faceprot.faces import find_faces
from faceprot.io import load_image

from conftest import ROOT

M = np.asarray(YCBCR_FROM_RGB)


def _person(manifest, k):
    """The photos of the k-th identity in the manifest's order."""
    ids = list(dict.fromkeys(e["identity"] for e in manifest))
    return [e["path"] for e in manifest if e["identity"] == ids[k]]


@pytest.fixture(scope="module")
def lfw_person(lfw_manifest):
    return _person(lfw_manifest, 101)  # the tuning split (people 100-199)


@pytest.fixture(scope="module")
def perceptual(lfw_person):
    # high: the perceptual budget's own defaults (medium and low are the rule scaled down)
    return enroll(lfw_person[0], preset="high", seed=2, n_views=2, iterations=3)


def _check_budget_on_the_output(mask: PersonalMask, photo: str, refine: int) -> dict:
    """Apply, re-read the PNG, and check every pixel's Y, Cb and Cr change against the photo's
    own budget taken into the photo as the paste-back takes the delta; returns what it saw."""
    pic = load_image(photo)
    prot = load_image(apply_mask(pic, mask, refine=refine, seed=1).png()).rgb.astype(np.float64)
    clean = pic.rgb.astype(np.float64)
    face = find_faces(pic.rgb)[0]
    t = face.transform
    change = (prot - clean) @ M.T  # (H, W, 3): Y, Cb, Cr change in levels
    inside = region_mask(clean.shape[:2], t)
    assert np.abs(prot - clean)[~inside].max(initial=0) == 0
    rule = mask.budget_rule()
    budget = rule(to_pictures(align(pic.rgb, t))[0], face.canonical_landmarks)  # this photo's own
    (x0, y0, x1, y1), bound = to_photo(clean.shape[:2], t, budget * 255)
    seen = np.abs(change[y0:y1, x0:x1])
    # an 8-bit rounding of R, G, B moves Y, Cb and Cr by at most half a level each
    excess = seen - bound - 0.5
    assert excess.max() <= 1e-3, f"over budget by {excess.max():.3f} levels (Y, Cb, Cr: {excess.max((0, 1))})"
    return {"luma": seen[..., 0].max(), "chroma": seen[..., 1:].max(), "bound": bound}


@pytest.mark.parametrize("refine", [0, 2])
def test_the_perceptual_budget_holds_pixel_by_pixel_on_lfw_and_a_real_size_photo(perceptual, lfw_person,
                                                                                  photos_manifest, refine):
    mask = perceptual.mask
    real_size = next(e["path"] for e in photos_manifest if e["identity"] == "obama")
    for photo in (lfw_person[1], real_size):
        seen = _check_budget_on_the_output(mask, photo, refine)
        # the textured budget is really used, and the chroma change stays far below the luminance's
        assert seen["luma"] > mask.eps * 255 + 1
        assert seen["chroma"] < seen["luma"] / 2


def test_paste_back_keeps_a_luminance_change_a_luminance_change_at_the_gamut_edge():
    """A bright skin pixel (250, 200, 200) given +10 levels of pure luminance: clipping R alone
    would turn part of it into a colour change; "scale" shortens the whole change instead."""
    rgb = np.zeros((256, 256, 3), np.uint8)
    rgb[...] = (250, 200, 200)
    t = FaceTransform(np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    delta = torch.from_numpy(BudgetSpace("ycbcr").to_rgb(torch.tensor([10 / 255, 0, 0]).view(3, 1, 1)).expand(3, 256, 256).numpy())
    centre = (128, 128)
    clipped = paste_back(rgb, t, delta, gamut="clip")[centre].astype(float) - rgb[centre]
    scaled = paste_back(rgb, t, delta, gamut="scale")[centre].astype(float) - rgb[centre]
    assert list(clipped) == [5, 10, 10] and abs((M @ clipped)[2]) > 2  # a 2.5-level shift in Cr
    assert list(scaled) == [5, 5, 5] and np.abs((M @ scaled)[1:]).max() < 1e-6
    # and "clip" is the default, bit for bit the v1 paste-back
    assert np.array_equal(paste_back(rgb, t, delta), paste_back(rgb, t, delta, gamut="clip"))


def test_budget_space_round_trip_and_gradient():
    x = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    sp = BudgetSpace("ycbcr")
    torch.testing.assert_close(sp.to_rgb(sp.from_rgb(x)).double(), x, atol=1e-6, rtol=0)
    grey = torch.full((1, 3, 1, 1), 0.5)
    torch.testing.assert_close(sp.from_rgb(grey)[0, :, 0, 0], torch.tensor([0.5, 0.0, 0.0]), atol=1e-6, rtol=0)
    assert BudgetSpace("rgb").to_rgb(x) is x and BudgetSpace("rgb").from_rgb(x) is x  # v1: untouched
    c = torch.rand(1, 3, 3, 3, dtype=torch.float32, requires_grad=True)
    (g,) = torch.autograd.grad(sp.to_rgb(c).sum(), c)  # linear: the gradient is the column sums
    inv = np.linalg.inv(M)
    np.testing.assert_allclose(g[0, :, 0, 0].numpy(), inv.sum(0), atol=1e-5)


def test_budget_is_low_in_the_eyes_and_follows_texture(perceptual):
    rule = perceptual.mask.budget_rule()
    face = to_pictures(perceptual.views.images[:1])[0]
    lm = perceptual.views.landmarks[0]
    b = rule(face, lm) * 255
    luma, chroma = b[0], b[1]
    head = rule.head(lm) == 1  # beyond the head (the background beside it) the budget fades to 0
    assert luma[head].min() >= min(rule.eye_luma, rule.luma_flat) * 255 - 1e-4 and luma.max() <= rule.luma_texture * 255 + 1e-4
    eyes = rule.eyes(lm)
    assert luma[eyes].max() <= rule.eye_luma * 255 + 1e-4 and chroma[eyes].max() <= rule.eye_chroma * 255 + 1e-4
    np.testing.assert_allclose(chroma[~eyes], rule.chroma_ratio * luma[~eyes], rtol=1e-5)
    # the eye polygons (36-41, 42-47) themselves are inside the low-budget region
    for i in range(36, 48):
        x, y = np.round(lm[i]).astype(int)
        assert eyes[y, x]
    # eyebrows (17-26) are textured; the cheek below the eye (between points 1-3 and 31) is flat
    brows = np.round(lm[17:27]).astype(int)
    cheek = np.round((lm[2] + lm[31]) / 2).astype(int)
    assert np.mean([luma[y, x] for x, y in brows]) > luma[cheek[1] - 3:cheek[1] + 4, cheek[0] - 3:cheek[0] + 4].mean() + 2


def test_absolute_detail_texture_calls_smooth_shading_flat_and_fine_detail_textured():
    """texture_detail > 0: the texture is the local RMS of fine luminance detail over an absolute
    level. A smooth ramp (shading) is flat under it, though the percentile rule calls much of it
    texture; fine noise of that RMS is full texture; files without the field read as the old rule."""
    s = 256
    ramp = np.repeat(np.linspace(40, 220, s, dtype=np.float32)[None, :, None], s, 0).repeat(3, 2)
    ramp[:, s // 2:] += 30 * np.sin(np.arange(s // 2, dtype=np.float32) / 6)[None, :, None]  # shading on one half
    ramp = np.clip(ramp, 0, 255).astype(np.uint8)
    face = np.ones((s, s), bool)
    detail = PerceptualBudget(texture_detail=6 / 255)
    t_abs, t_rel = detail.texture(ramp, face), PerceptualBudget().texture(ramp, face)
    assert t_abs[8:-8, 8:-8].mean() < 0.08 and t_abs[8:-8, 8:-8].max() < 0.2 and t_rel[8:-8, s // 2 + 8:-8].mean() > 0.3
    rng = np.random.default_rng(0)
    noisy = np.clip(128 + rng.normal(0, 20, (s, s, 1)).repeat(3, 2), 0, 255).astype(np.uint8)
    assert np.median(detail.texture(noisy, face)) == 1.0
    # the rule's fields round-trip; a dict of a file made before the field gets the old rule
    assert PerceptualBudget.from_dict(detail.to_dict()) == detail
    old = {k: v for k, v in PerceptualBudget().to_dict().items() if k != "texture_detail"}
    assert PerceptualBudget.from_dict(old) == PerceptualBudget() and PerceptualBudget().texture_detail == 0



def test_head_only_keeps_the_face_forehead_and_hair_and_leaves_the_background(perceptual):
    """head_margin > 0 (16, the default): the budget is the rule's on the head and zero beyond the
    margin (the background beside it); 0, every v2 file made before it, is the whole square."""
    face = to_pictures(perceptual.views.images[:1])[0]
    lm = perceptual.views.landmarks[0]
    whole = PerceptualBudget(head_margin=0)
    head = PerceptualBudget(head_margin=12)
    b0, b1 = whole(face, lm), head(face, lm)
    keep = head.head(lm)
    assert keep.min() == 0 and keep.max() == 1 and 0.3 < keep.mean() < 0.9
    np.testing.assert_allclose(b1, b0 * keep[None], rtol=1e-6)
    # the nose tip, the mid-forehead (above the brows by a third of the brow-to-chin height) and
    # the eyes are kept; the canonical square's bottom corners (neck, shoulders, background) are not
    nose = np.round(lm[30]).astype(int)
    brow_y = lm[17:27, 1].mean()
    forehead = np.round([lm[27, 0], brow_y - (lm[8, 1] - brow_y) / 3]).astype(int)
    for x, y in (nose, forehead, *np.round(lm[36:48]).astype(int)):
        assert keep[y, x] == 1
    assert keep[-4:, :4].max() == 0 and keep[-4:, -4:].max() == 0
    assert np.all(b1[:, keep == 0] == 0)
    # a smooth edge: no jump of more than a fifth of the budget between neighbours
    assert np.abs(np.diff(keep, axis=0)).max() < 0.2 and np.abs(np.diff(keep, axis=1)).max() < 0.2
    old = {k: v for k, v in PerceptualBudget().to_dict().items() if k != "head_margin"}
    assert PerceptualBudget.from_dict(old) == whole  # a v2 file made before the field: the whole square
    # the presets' (and v2's) default: the head, with a 16 px margin
    assert PerceptualBudget().head_margin == 16 and config_for("medium").perceptual_budget().head_margin == 16
    assert config_for("medium", head_margin=8).perceptual_budget().head_margin == 8

def test_perceptual_mask_file_round_trip_and_v1_files(perceptual, tmp_path):
    m = perceptual.mask
    assert m.format_version == 2 and m.budget.shape == (3, 256, 256) and m.space().name == "ycbcr"
    back = PersonalMask.load(m.save(tmp_path / "v2.faceprot"))
    assert back.perceptual == m.perceptual and np.array_equal(back.delta, m.delta)
    assert np.array_equal(back.budget, m.budget) and back.format_version == 2
    assert back.metadata()["format_version"] == "2"
    # the delta is within the selfie's budget in Y, Cb, Cr (not in RGB)
    inside = BudgetSpace("ycbcr").from_rgb(torch.from_numpy(m.delta)).numpy()
    assert (np.abs(inside) <= m.budget + 1e-6).all()
    # a format-2 file without its rule is refused clearly
    from safetensors.torch import save

    meta = {k: v for k, v in m.metadata().items() if k != "perceptual"}
    (tmp_path / "broken.faceprot").write_bytes(save(m.tensors(), metadata=meta))
    with pytest.raises(MaskFileError, match="incomplete or damaged metadata"):
        PersonalMask.load(tmp_path / "broken.faceprot")
    # a v2 budget pushed into a v1 file (wrong shape for format 1) is refused too
    (tmp_path / "v1-shape.faceprot").write_bytes(save(m.tensors(), metadata={**meta, "format_version": "1"}))
    with pytest.raises(MaskFileError, match="wrong shape"):
        PersonalMask.load(tmp_path / "v1-shape.faceprot")


def test_a_v1_mask_file_still_applies_exactly_as_before(photos_manifest):
    """tests/data/obama-selfie-v1.faceprot was saved by v1 (the example mask until cloak v2): it
    reads as the RGB box, is written back as format 1, and applies as the v1 paste-back of its
    delta (refinement keeps its RGB box)."""
    m = PersonalMask.load(ROOT / "tests" / "data" / "obama-selfie-v1.faceprot")
    assert m.perceptual is None and m.format_version == 1 and m.space().name == "rgb"
    assert m.budget.shape == (1, 256, 256) and m.metadata()["format_version"] == "1"
    assert "perceptual" not in m.metadata()
    photo = ROOT / "examples" / "obama-1.jpg"
    pic = load_image(photo)
    face = find_faces(pic.rgb)[0]
    assert np.array_equal(apply_mask(pic, m).picture.rgb, paste_back(pic.rgb, face.transform, m.delta))
    refined = apply_mask(pic, m, refine=2).picture.rgb.astype(int)
    bound = paste_back(np.full(pic.rgb.shape, 128, np.uint8), face.transform, np.repeat(m.budget, 3, 0)).astype(int) - 128
    assert (np.abs(refined - pic.rgb) <= bound + 1).all()


def test_the_strengths_are_the_perceptual_budget_scaled_and_paper_is_v1s_box():
    assert STRENGTHS == ("low", "medium", "high") and set(PRESETS) == {*STRENGTHS, "paper"}
    paper = config_for("paper")
    assert paper.budget == "box" and paper.perceptual_budget() is None
    assert (paper.eps, paper.eps_high, paper.alpha, paper.iterations) == (8 / 255, 16 / 255, 2 / 255, 10)
    # the perceptual budget's rule at 0.35x, 0.5x and 1x its defaults (high: the defaults)
    assert config_for("high").perceptual_budget() == PerceptualBudget()
    b = PerceptualBudget()
    for name, s in (("low", 0.35), ("medium", 0.5), ("high", 1.0)):
        cfg = config_for(name)
        assert cfg.budget == "perceptual" and cfg.iterations == 10
        assert cfg.perceptual_budget() == PerceptualBudget(
            luma_flat=b.luma_flat * s, luma_texture=b.luma_texture * s, eye_luma=b.eye_luma * s,
            eye_chroma=b.eye_chroma * s)
    cfg = config_for("high", luma_texture=12 / 255)
    assert cfg.perceptual_budget() == PerceptualBudget(luma_texture=12 / 255)
    with pytest.raises(ValueError, match="budget must be"):
        config_for("medium", budget="lab")
    assert json.loads(json.dumps(PerceptualBudget().to_dict())) == PerceptualBudget().to_dict()
