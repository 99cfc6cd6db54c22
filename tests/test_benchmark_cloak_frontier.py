"""The frontier mode of benchmarks/cloak.py (issue 16 items 2 and 3) and the transfer techniques.

* the CIEDE2000-bounded baseline's projection (``clip_ciede2000``) and the methods' budget scaling;
* the transfer options of :class:`CloakConfig` (input diversity, model dropout): shapes, the
  identity when off, and that each reaches the optimiser;
* ``cloak.py --frontier`` on one LFW tuning person, every method at two scales, refine 0 and 1,
  with the leave-one-out rows, then ``--resume`` and ``--report`` (table, JSON, PNG); ``--set``
  reaches enrollment; the acceptance split (people 0-99) is refused without ``--acceptance``, and
  ``--acceptance`` runs only on a clean checkout and resumes only at the commit it began at.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, shared_path

sys.path.insert(0, str(ROOT / "benchmarks"))
import cloak  # noqa: E402
import cloak_frontier as fr  # noqa: E402
from _common import RESULTS  # noqa: E402
from faceprot.attack import ConvDropout, FeatureDisruption, resize_pad  # noqa: E402
from faceprot.cloak.enroll import PRESETS  # noqa: E402
from faceprot.cloak.optimizer import CloakConfig, UniversalCloak  # noqa: E402
from faceprot.io import load_image  # noqa: E402
from faceprot.visibility import ciede2000  # noqa: E402
from tiny_models import tiny_conv_recognizer  # noqa: E402


def test_ciede2000_clip_bounds_every_pixel_and_moves_only_those_over():
    rng = np.random.default_rng(0)
    clean = rng.integers(30, 225, (40, 50, 3), dtype=np.uint8)
    prot = np.clip(clean.astype(int) + rng.integers(-12, 13, clean.shape), 0, 255).astype(np.uint8)
    bound = 2.0
    before = ciede2000(clean, prot)
    assert (before > bound).mean() > 0.3  # the test has pixels to move
    out = fr.clip_ciede2000(clean, prot, bound)
    assert out.dtype == np.uint8 and ciede2000(clean, out).max() <= bound
    under = before <= bound
    assert np.array_equal(out[under], prot[under])
    # moved back along each pixel's own change, never past the clean value
    c, p, o = (a.astype(int)[~under] for a in (clean, prot, out))
    assert np.all(np.abs(o - c) <= np.abs(p - c)) and np.all((o - c) * (p - c) >= 0)
    assert (o != c).any()  # not simply reset: most keep part of their change


def test_method_settings_scale_the_budgets():
    kw, bound = fr.method_settings("v1", 0.5)
    assert bound is None and kw["preset"] == "paper"
    assert (kw["eps"], kw["eps_high"], kw["alpha"]) == pytest.approx(
        (PRESETS["paper"]["eps"] / 2, PRESETS["paper"]["eps_high"] / 2, PRESETS["paper"]["alpha"] / 2))
    kw2, bound2 = fr.method_settings("de2000", 0.5)
    assert kw2 == kw and bound2 == pytest.approx(fr.DE_BOUND / 2)
    v2, _ = fr.method_settings("v2", 1.5)
    assert v2["budget"] == "perceptual" and v2["luma_texture"] == pytest.approx(15 / 255)
    assert v2["eye_chroma"] == pytest.approx(0.75 / 255) and "chroma_ratio" not in v2
    with pytest.raises(ValueError):
        fr.method_settings("v3", 1)
    # --v2: another scale-1 budget; its four budgets scale, the other fields pass as given
    b, _ = fr.method_settings("v2", 2, {"luma_flat": 1 / 255, "texture_detail": 6 / 255})
    assert b["luma_flat"] == pytest.approx(2 / 255) and b["luma_texture"] == pytest.approx(20 / 255)
    assert b["texture_detail"] == pytest.approx(6 / 255)


def test_the_v2_option_reads_levels_and_refuses_unknown_fields(capsys):
    from _common import level

    assert level("6/255") == pytest.approx(6 / 255) and level(0.5) == 0.5
    with pytest.raises(SystemExit):
        cloak.main(["--frontier", "--v2", "brightness=3/255"])
    assert "not a PerceptualBudget field" in capsys.readouterr().err


def test_compare_at_interpolates_each_frontier_at_equal_face_psnr():
    def pt(scale, psnr, psr):
        return {"method": "v2", "scale": scale, "setting": "both", "refine": 10, "psnr_face": psnr,
                "top1": {"dlib-cpp": {"psr": psr}}}

    (row,) = fr.compare_at([pt(1.5, 32.0, 0.8), pt(0.5, 38.0, 0.2), pt(1.0, 35.0, 0.5)], at=(34.0, 36.5, 39.0))
    assert (row["method"], row["evaluator"]) == ("v2", "dlib-cpp")
    assert row["34"] == pytest.approx(0.6) and row["36.5"] == pytest.approx(0.35)
    assert row["39"] is None  # outside the PSNRs measured: no extrapolation


def test_resize_pad_is_the_identity_when_off_and_a_shrunk_padded_copy_when_on():
    x = torch.rand(3, 3, 64, 64, requires_grad=True)
    assert resize_pad(x, 0.0, 0.9, torch.Generator().manual_seed(0)) is x
    out = resize_pad(x, 1.0, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.equal(out, resize_pad(x, 1.0, 0.5, torch.Generator().manual_seed(0)))
    for k in range(3):  # every sample was shrunk: whole zero rows or columns of padding
        zero_rows = (out[k].abs().sum(dim=(0, 2)) == 0).sum() + (out[k].abs().sum(dim=(0, 1)) == 0).sum()
        assert zero_rows > 0
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_conv_dropout_thins_conv_outputs_only_inside_its_context():
    net = tiny_conv_recognizer()
    x = torch.rand(2, 3, 256, 256)
    clean = net(x)
    with ConvDropout([net], 0.3, torch.Generator().manual_seed(0)) as n:
        assert n == 1
        a, b = net(x), net(x)
    assert not torch.allclose(a, clean) and not torch.allclose(a, b)  # a fresh mask per pass
    assert torch.equal(net(x), clean)  # hooks gone
    with ConvDropout([net], 0.0, torch.Generator()) as n:
        assert n == 0
    with ConvDropout([torch.nn.Linear(2, 2)], 0.3, torch.Generator()) as n:
        assert n == 0  # no conv modules (MobileFaceNet's ONNX graph): untouched


def test_feature_disruption_hooks_dlib_resnets_middle_unit_and_its_gradient_lowers_its_term():
    from faceprot.recognizers import load_surrogate

    dlib, mfn = load_surrogate("dlib-resnet"), load_surrogate("mobilefacenet")
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    with FeatureDisruption([dlib]) as fda:
        assert len(fda.handles) == 1
        dlib(x)
        before = fda.loss()
        assert before.shape == (2,) and fda.loss() is None  # read once per forward pass
        (g,) = torch.autograd.grad(before.sum(), x)
        y = (x - 0.02 * g.sign()).clamp(0, 1)
        dlib(y)
        assert (fda.loss() < before).all()  # following its gradient lowers the term
    assert not fda.handles
    with torch.no_grad():
        dlib(x)  # hooks gone: nothing is kept
    assert fda.kept == []
    with FeatureDisruption([mfn]) as fda:  # the ONNX graph has no units: untouched
        mfn(x)
        assert not fda.handles and fda.loss() is None
    with FeatureDisruption([dlib], enabled=False) as fda:
        dlib(x)
        assert fda.loss() is None
    # CloakConfig.feature_weight reaches the optimiser
    views = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    budget = torch.full((1, 256, 256), 8 / 255)
    with torch.no_grad():
        person = {"dlib-resnet": dlib(views).mean(0)}

    def mask(w):
        c = CloakConfig(iterations=2, use_attention=False, use_eot=False, view_warp_px=0, feature_weight=w)
        return UniversalCloak([dlib], c)(views, budget, None, person).delta

    assert torch.equal(mask(0.0), mask(0.0)) and not torch.equal(mask(0.0), mask(3.0))


def test_transfer_options_are_off_by_default_and_reach_the_optimiser():
    cfg = CloakConfig()
    assert cfg.input_diversity == 0 and cfg.model_dropout == 0 and cfg.feature_weight == 0
    net = tiny_conv_recognizer()
    views = torch.rand(2, 3, 256, 256)
    budget = torch.full((1, 256, 256), 8 / 255)
    person = {"tiny": net(views).mean(0).detach()}

    def mask(**kw):
        c = CloakConfig(iterations=3, use_attention=False, use_eot=False, **kw)
        return UniversalCloak([net], c)(views, budget, None, person).delta

    base = mask()
    assert torch.equal(base, mask(input_diversity=0.0, model_dropout=0.0))
    assert not torch.equal(base, mask(input_diversity=1.0))
    assert not torch.equal(base, mask(model_dropout=0.2))



def test_flatness_takes_one_more_gradient_per_step_further_up_the_loss_and_stays_in_the_budget():
    assert CloakConfig().flat_weight == 0  # off by default
    net = tiny_conv_recognizer()
    views = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    budget = torch.full((1, 256, 256), 8 / 255)
    # someone else's embedding: the loss is then away from its maximum, where a step up is a step up
    person = {"tiny": net(torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(3))).mean(0).detach()}
    seen = []
    handle = net.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))

    def run(w, step=2 / 255):
        seen.clear()
        c = CloakConfig(iterations=3, use_attention=False, use_eot=False, view_warp_px=0, flat_weight=w,
                        flat_step=step)
        return UniversalCloak([net], c)(views, budget, None, person).delta, list(seen)

    base, plain = run(0.0)
    flat, looked = run(0.5)
    assert len(plain) == 3 and len(looked) == 6  # one look-ahead pass per step
    assert not torch.equal(base, flat)
    assert flat.abs().max() <= 8 / 255 + 1e-6  # the budget holds
    assert (looked[1] - looked[0]).abs().mean() == pytest.approx(2 / 255, rel=0.05)  # flat_step, on average
    # the look-ahead point is a step up the loss from the step's own point (the loss is the
    # similarity to the person, which the cloak lowers); a short step, as the tiny net is far
    # from linear over 2/255
    _, looked = run(0.5, step=5e-4)
    with torch.no_grad():
        sim = lambda x: torch.nn.functional.cosine_similarity(net(x), person["tiny"][None])
        assert (sim(looked[1]) > sim(looked[0])).all() and (sim(looked[3]) > sim(looked[2])).all()
    handle.remove()


# --- the frontier mode on a real tuning person ---------------------------------------------------


def _fresh(run: str):
    out = RESULTS / "cloak" / run
    assert run.startswith("smoke-")
    shutil.rmtree(out, ignore_errors=True)
    return out


@pytest.mark.slow
def test_frontier_mode_runs_resumes_and_reports(capsys, faceprot_threads):
    faces = shared_path("assets", "faces", "lfw")
    out = _fresh("smoke-frontier")
    argv = ["--faces", str(faces), "--frontier", "--people", "1", "--scales", "0.5,1", "--refines", "0,1",
            "--leave-one-out", "--set", "iterations=1", "n_views=1", "--run", "smoke-frontier"]
    assert cloak.main(argv) == 0
    f = out / "frontier-1-of-1.json"
    d = json.loads(f.read_text())
    (rec,) = d["people"]
    manifest = json.loads((faces / "manifest.json").read_text())
    assert rec["identity"] == list(dict.fromkeys(e["identity"] for e in manifest))[100]  # the first tuning person
    assert "LFW #100-100" in d["meta"]["people_range"] and d["meta"]["overrides"] == {"iterations": 1, "n_views": 1}
    keys = {(e["method"], e["scale"], e["setting"], e["refine"]) for e in rec["frontier"]}
    assert keys == {(m, s, k, r) for m in fr.METHODS for s in (0.5, 1.0)
                    for k in ("both", "dlib-resnet", "mobilefacenet") for r in (0, 1)}
    for e in rec["frontier"]:
        assert [r["probe"] for r in e["rows"]] == rec["probes"] and rec["probes"]
        for r in e["rows"]:
            assert set(r["scores"]) == set(fr.scored_by(e["setting"]))
            assert set(r["vis"]) == set(fr.VIS_KEYS) and 25 < r["vis"]["psnr_face"] < 70
        if e["setting"] == "dlib-resnet":
            assert list(e["rows"][0]["scores"]) == ["mobilefacenet"]
        if e["setting"] == "mobilefacenet":
            assert list(e["rows"][0]["scores"]) == ["dlib-cpp"]
    # the baseline's bound holds on the saved photo, pixel by pixel
    clean = {Path(p).stem: load_image(faces / p).rgb for p in rec["probes"]}
    slug = rec["identity"].replace("/", "_")
    for s in (0.5, 1.0):
        pngs = sorted((out / "images" / slug).glob(f"de2000-{s:g}-both-r1__*.png"))
        assert len(pngs) == len(rec["probes"])
        for png in pngs:
            assert ciede2000(clean[png.stem.split("__")[1]], load_image(png).rgb).max() <= fr.DE_BOUND * s
    # a bigger budget is more visible
    by = {(e["method"], e["scale"], e["setting"], e["refine"]): e["rows"] for e in rec["frontier"]}
    for m in fr.METHODS:
        assert np.mean([r["vis"]["psnr_face"] for r in by[(m, 1.0, "both", 0)]]) < \
            np.mean([r["vis"]["psnr_face"] for r in by[(m, 0.5, "both", 0)]])
    printed = capsys.readouterr().out
    assert "| v2 | 1 | both |" in printed and "| de2000 | 0.5 | mobilefacenet |" in printed

    # --resume: nothing left to do, the shard is not rewritten
    before = (f.stat().st_mtime_ns, f.read_bytes())
    t = time.perf_counter()
    assert cloak.main(argv + ["--resume"]) == 0
    assert time.perf_counter() - t < 20 and (f.stat().st_mtime_ns, f.read_bytes()) == before

    # --report: the merged table, its JSON and the plot, freshly written
    started = time.time()
    capsys.readouterr()
    assert cloak.main(["--frontier", "--report", "--run", "smoke-frontier"]) == 0
    for name in ("frontier.md", "frontier.json", "frontier.png"):
        assert (out / name).stat().st_mtime >= started - 1, name
    s = json.loads((out / "frontier.json").read_text())["summary"]
    assert s["people"] == 1 and len(s["points"]) == len(keys)
    pt = next(p for p in s["points"] if (p["method"], p["scale"], p["setting"], p["refine"]) == ("v2", 1.0, "both", 1))
    rows = by[("v2", 1.0, "both", 1)]
    assert pt["psnr_face"] == pytest.approx(np.mean([r["vis"]["psnr_face"] for r in rows]))
    found = [r["scores"]["dlib-cpp"]["top1"] for r in rows if r["scores"]["dlib-cpp"]["found"]]
    assert pt["top1"]["dlib-cpp"]["psr"] == pytest.approx(np.mean(found))
    assert {c["evaluator"] for c in s["compare"] if c["setting"] == "dlib-resnet"} == {"mobilefacenet"}
    assert capsys.readouterr().out == (out / "frontier.md").read_text() + "\n"
    # the people measured, not only the range the shard planned
    assert "- people in the records: 1 (planned: LFW #100-100" in (out / "frontier.md").read_text()
    png = load_image(out / "frontier.png").rgb
    assert png.shape[0] > 400 and png.std() > 10  # a drawn figure, not a blank one
    # --acceptance --report: the bars too (this smoke run has no refine-10 medium: said, not guessed)
    assert cloak.main(["--frontier", "--report", "--acceptance", "--run", "smoke-frontier"]) == 0
    bars = (out / "acceptance.md").read_text()
    assert "| medium (v2 at 0.5, refine 10) | not in this run |" in bars and "v2 beats v1 by >= 10 points" in bars
    assert "Not the acceptance configuration" in bars  # its --set iterations=1 n_views=1
    with pytest.raises(SystemExit):  # --merge of a run with no shards
        cloak.main(["--frontier", "--report", "--run", "smoke-frontier", "--merge", "smoke-no-such-run"])

    # --set reaches enrollment: heavy dropout on dlib-resnet makes another mask
    argv2 = ["--faces", str(faces), "--frontier", "--people", "1", "--methods", "v2", "--scales", "1", "--refines", "0",
             "--settings", "dlib-resnet", "--set", "iterations=1", "n_views=1", "model_dropout=0.5",
             "--run", "smoke-frontier-set"]
    _fresh("smoke-frontier-set")
    assert cloak.main(argv2) == 0
    (rec2,) = json.loads((RESULTS / "cloak" / "smoke-frontier-set" / "frontier-1-of-1.json").read_text())["people"]
    assert [r["vis"] for r in rec2["frontier"][0]["rows"]] != [r["vis"] for r in by[("v2", 1.0, "dlib-resnet", 0)]]


def test_frontier_refuses_the_acceptance_split(monkeypatch):
    faces = shared_path("assets", "faces", "lfw")

    def never(p, *a, **k):  # should the refusal break, still run nothing on an acceptance person
        raise AssertionError(f"the frontier ran on {p['identity']}")

    monkeypatch.setattr(cloak, "run_frontier", never)
    _fresh("smoke-never")
    for start in ("0", "99"):
        with pytest.raises(SystemExit):
            cloak.main(["--faces", str(faces), "--frontier", "--start", start, "--people", "1", "--run", "smoke-never"])
    assert not (RESULTS / "cloak" / "smoke-never").exists()  # refused before anything was written


def test_frontier_on_a_folder_without_a_split_starts_at_its_first_person(monkeypatch):
    """The tuning start (LFW #100) is LFW's: on the real-size photos the frontier starts at their
    first person, so --people N runs N people (it once ran none, silently)."""
    faces = shared_path("assets", "faces", "photos")
    ran = []

    def record(p, *a, **k):
        ran.append(p["identity"])
        return {"identity": p["identity"], "probes": [], "frontier": []}

    monkeypatch.setattr(cloak, "run_frontier", record)
    out = _fresh("smoke-frontier-photos")
    assert cloak.main(["--faces", str(faces), "--frontier", "--people", "2", "--run", "smoke-frontier-photos"]) == 0
    manifest = json.loads((faces / "manifest.json").read_text())
    order = list(dict.fromkeys(e["identity"] for e in manifest))
    assert len(ran) == 2 and order.index(ran[0]) < order.index(ran[1]) and ran[0] == _first_planned(faces)
    meta = json.loads((out / "frontier-1-of-1.json").read_text())["meta"]
    assert meta["people_range"].startswith("photos #") and meta["people_range"].endswith(", 2 people")


def _first_planned(faces):
    from cloak_protocol import gallery_embeddings, plan_people
    from faceprot.datasets import load_faceset

    entries = load_faceset(faces)
    _, n_faces = gallery_embeddings(entries, RESULTS / "cache")
    return plan_people(entries, n_faces, 1, 0)[0]["identity"]


def test_the_acceptance_run_measures_one_named_commit(monkeypatch, capsys):
    """Issue 16: the acceptance run happens once, with its commit named. ``--acceptance`` refuses a
    checkout with uncommitted changes, and refuses to resume a shard measured at another commit;
    each record names its commit. A tuning run resumed at another commit only warns, and its meta
    names both commits."""
    faces = shared_path("assets", "faces", "lfw")
    entries = json.loads((faces / "manifest.json").read_text())
    ran = []

    def record(p, *a, **k):
        ran.append(p["identity"])
        return {"identity": p["identity"], "probes": [], "frontier": []}

    monkeypatch.setattr(cloak, "run_frontier", record)
    # the plan needs only the face counts: every photo one face (no detector run, no gallery cache)
    monkeypatch.setattr(cloak, "gallery_embeddings", lambda e, cache: ({}, np.ones(len(e), int)))
    out = _fresh("smoke-acceptance")
    argv = ["--faces", str(faces), "--frontier", "--acceptance", "--start", "0", "--run", "smoke-acceptance", "--resume"]
    order = list(dict.fromkeys(e["identity"] for e in entries))

    monkeypatch.setattr(cloak, "git_commit", lambda: "0123456789+dirty")
    with pytest.raises(SystemExit):
        cloak.main(argv + ["--people", "1"])
    assert "commit first" in capsys.readouterr().err and ran == []

    monkeypatch.setattr(cloak, "git_commit", lambda: "0123456789")
    assert cloak.main(argv + ["--people", "1"]) == 0
    d = json.loads((out / "frontier-1-of-1.json").read_text())
    assert ran == [order[0]] and d["meta"]["commit"] == "0123456789" and d["people"][0]["commit"] == "0123456789"

    monkeypatch.setattr(cloak, "git_commit", lambda: "abcdefabcd")
    with pytest.raises(SystemExit):
        cloak.main(argv + ["--people", "2"])
    assert "measured at commit 0123456789" in capsys.readouterr().err and ran == [order[0]]

    # a tuning run (no --acceptance) resumed at another commit: a warning, and both commits named
    tuning = ["--faces", str(faces), "--frontier", "--run", "smoke-acceptance-tuning", "--resume"]
    out2 = _fresh("smoke-acceptance-tuning")
    monkeypatch.setattr(cloak, "git_commit", lambda: "0123456789")
    assert cloak.main(tuning + ["--people", "1"]) == 0
    monkeypatch.setattr(cloak, "git_commit", lambda: "abcdefabcd")
    capsys.readouterr()
    assert cloak.main(tuning + ["--people", "2"]) == 0
    assert "measured at commit 0123456789" in capsys.readouterr().err
    d = json.loads((out2 / "frontier-1-of-1.json").read_text())
    assert ran[1:] == order[100:102] and d["meta"]["commit"] == "0123456789; abcdefabcd"
    assert [r["commit"] for r in d["people"]] == ["0123456789", "abcdefabcd"]


# --- issue 16's bars, read off a run (cloak_acceptance) -------------------------------------------


def _entry(method, scale, setting, refine, psnr, psr, n=20, eye_p95=0.6, jpeg=None):
    """A frontier entry of n probes at face PSNR ``psnr`` whose first round(psr * n) are hidden from
    every evaluator that scores the setting (and, after the JPEG re-save, the first round(jpeg * n))."""
    hidden, hidden_jpeg = round(psr * n), round((psr if jpeg is None else jpeg) * n)
    rows = []
    for i in range(n):
        vis = dict(psnr_face=psnr, ssim_face=0.95, de_face_mean=0.5, de_face_p95=1.0, de_eye_mean=0.3, de_eye_p95=eye_p95)
        rows.append({"probe": f"p{i}", "vis": vis,
                     "scores": {ev: {"found": True, "top1": i < hidden} for ev in fr.scored_by(setting)},
                     "jpeg75": {ev: {"found": True, "top1": i < hidden_jpeg} for ev in fr.scored_by(setting)}})
    return {"method": method, "scale": scale, "setting": setting, "refine": refine, "enroll_s": 5.0, "rows": rows}


def _run(gain10=0.20, gain0=0.05):
    """A run of one person: v1 and v2 on both surrogates and leave-one-out, refine 10 and 0. v1
    (both) is 50 / 70 / 90% at 38 / 34 / 30 dB; v2 is ``gain`` ahead of it wherever both reach.
    Leave-one-out: dlib-resnet only hides nothing with either method; mobilefacenet only hides 20%
    (v1, 30-38 dB) and 25% (v2, 31-42 dB)."""
    e = []
    for refine, gain in ((10, gain10), (0, gain0)):
        for scale, psnr, psr in ((0.5, 38, 0.5), (1.0, 34, 0.7), (1.5, 30, 0.9)):
            e.append(_entry("v1", scale, "both", refine, psnr, psr))
        # v2 on v1's line (linear: 0.5 at 38 dB, -5 points a dB) plus the gain, at its own PSNRs
        e += [_entry("v2", 0.5, "both", refine, 42, 0.4, jpeg=0.3),
              _entry("v2", 1.0, "both", refine, 36, 0.6 + gain),
              _entry("v2", 1.5, "both", refine, 32, 0.8 + gain)]
        for scale, psnr in ((0.5, 38), (1.0, 34), (1.5, 30)):
            e += [_entry("v1", scale, "dlib-resnet", refine, psnr, 0.0), _entry("v1", scale, "mobilefacenet", refine, psnr, 0.2)]
        for scale, psnr in ((0.5, 42), (1.0, 37), (1.5, 31)):
            e += [_entry("v2", scale, "dlib-resnet", refine, psnr, 0.0), _entry("v2", scale, "mobilefacenet", refine, psnr, 0.25)]
    return e


def _bars(entries, people=("a",)):
    import cloak_acceptance as ca

    records = [{"identity": who, "frontier": entries} for who in people[:1]]
    return {b["bar"]: b for b in ca.acceptance_bars(records)}


def _bar(bars, start):
    (b,) = [b for k, b in bars.items() if k.startswith(start)]
    return b


def test_acceptance_bars_read_the_strict_way():
    import cloak_acceptance as ca

    assert ca.MEDIUM_SCALE == 0.5
    bars = _bars(_run())
    gain10 = _bar(bars, "v2 beats v1 by >= 10 points of top-1 PSR at equal face PSNR, every evaluator, refine 10")
    assert gain10["met"] is True
    assert "dlib-cpp: 34 dB 90.0 vs 70.0 (+20.0), 36 dB 80.0 vs 60.0 (+20.0), least over 32.00-38.00 dB: +16.7 at 38.00 dB" \
        in gain10["measured"]
    assert _bar(bars, "v2 beats v1 by >= 10 points of top-1 PSR at equal face PSNR, every evaluator, refine 0")["met"] is False
    assert _bar(bars, "medium (v2 at 0.5, refine 10): face PSNR")["met"] is True
    assert _bar(bars, "medium (v2 at 0.5, refine 10): eye-region")["met"] is True
    psr = _bar(bars, "medium (v2 at 0.5, refine 10): top-1 PSR >= 75%")
    assert psr["met"] is False and psr["measured"].startswith("40.0 / 40.0 / 40.0 (faces found: 20 of 20")
    assert _bar(bars, "medium (v2 at 0.5, refine 10): top-1 PSR >= 65% after")["measured"] == "30.0 / 30.0 / 30.0"
    # twice nothing is nothing: 0% against v1's 0% does not meet "at least twice v1's"
    assert _bar(bars, "leave-one-out, dlib-resnet only -> mobilefacenet, refine 10")["met"] is False
    assert _bar(bars, "(the aim, not a bar)")["met"] is False
    # v2 ahead at 34 and 36 dB, but v1 was not measured at medium's 42 dB: not met, not failed
    loo = _bar(bars, "leave-one-out, mobilefacenet only -> dlib-cpp, refine 10")
    assert loo["met"] is None and "v1 not measured at this PSNR" in loo["measured"]
    # the mask alone is also held to the issue's own v1 figure: 68.9% at 32.04 dB, which 25% is not
    loo0 = _bar(bars, "leave-one-out, mobilefacenet only -> dlib-cpp, refine 0")
    assert loo0["met"] is False and "the issue's v1 figure 68.9 at 32.04 dB: v2 25.0" in loo0["measured"]
    md = ca.acceptance_markdown(list(bars.values()), {"run": "r", "commit": "abc"}, 1)
    assert "| **no** |" in md and "| yes |" in md and "not measured" in md and "commit abc" in md
    assert "Not the acceptance configuration" in ca.acceptance_markdown(list(bars.values()), {}, 1, '{"iterations": 1}')
    assert "| yes |" not in ca.acceptance_markdown(list(bars.values()), {}, 1, '{"iterations": 1}')


def test_acceptance_bars_count_what_the_gain_at_two_psnrs_hides():
    """The weakest gain anywhere in 32-38 dB decides, not only 34 and 36 dB: v2 ahead by 20 points
    there but level at 38 dB is not met."""
    e = [x for x in _run() if not (x["method"] == "v2" and x["setting"] == "both" and x["refine"] == 10)]
    e += [_entry("v2", 0.5, "both", 10, 42, 0.4), _entry("v2", 0.75, "both", 10, 38, 0.5),
          _entry("v2", 1.0, "both", 10, 36, 0.8), _entry("v2", 1.5, "both", 10, 32, 1.0)]
    b = _bar(_bars(e), "v2 beats v1 by >= 10 points of top-1 PSR at equal face PSNR, every evaluator, refine 10")
    assert b["met"] is False and "(+20.0)" in b["measured"] and "least over 32.00-38.00 dB: +0.0 at 38.00 dB" in b["measured"]


def test_acceptance_bars_missing_or_unsound_figures_are_never_met():
    base = _run()
    # a run without refine 10 (as the app applies): its rows are there, not measured
    only0 = [x for x in base if x["refine"] == 0]
    b = _bars(only0)
    assert _bar(b, "v2 beats v1 by >= 10 points of top-1 PSR at equal face PSNR, every evaluator, refine 10")["met"] is None
    assert _bar(b, "medium (v2 at 0.5, refine 10)")["measured"] == "not in this run"
    # a probe in which an evaluator finds no face is not hidden: 1 face found of 20, hidden, is 5%
    e = [x for x in base if (x["method"], x["scale"], x["setting"], x["refine"]) != ("v2", 0.5, "both", 10)]
    med = _entry("v2", 0.5, "both", 10, 42, 1.0)
    for r in med["rows"][1:]:
        r["scores"] = {ev: {"found": False} for ev in r["scores"]}
    psr = _bar(_bars(e + [med]), "medium (v2 at 0.5, refine 10): top-1 PSR >= 75%")
    assert psr["met"] is False and psr["measured"].startswith("5.0 / 5.0 / 5.0 (faces found: 1 of 20")
    # PSR bought with visibility does not count: a medium at 33.5 dB hiding 90% is not met
    loud = _entry("v2", 0.5, "both", 10, 33.5, 0.9)
    b = _bars(e + [loud])
    assert _bar(b, "medium (v2 at 0.5, refine 10): face PSNR")["met"] is False
    psr = _bar(b, "medium (v2 at 0.5, refine 10): top-1 PSR >= 75%")
    assert psr["met"] is False and "outside the visibility limits" in psr["measured"]
    # the visibility limits hold photo by photo: one photo's eye p95 over 5 fails the bar
    one = _entry("v2", 0.5, "both", 10, 42, 0.4)
    one["rows"][0]["vis"] = dict(one["rows"][0]["vis"], de_eye_p95=5.5)
    eye = _bar(_bars(e + [one]), "medium (v2 at 0.5, refine 10): eye-region")
    assert eye["met"] is False and "largest 5.50" in eye["measured"]
    # a frontier whose PSNR does not fall as the budget grows is not interpolated
    bent = [x for x in base if not (x["method"] == "v2" and x["setting"] == "both" and x["refine"] == 0)]
    bent += [_entry("v2", 0.5, "both", 0, 40, 0.4), _entry("v2", 1.0, "both", 0, 41, 0.9), _entry("v2", 1.5, "both", 0, 32, 1.0)]
    b = _bar(_bars(bent), "v2 beats v1 by >= 10 points of top-1 PSR at equal face PSNR, every evaluator, refine 0")
    assert b["met"] is None and "does not fall with the budget" in b["measured"]


def test_acceptance_bars_compare_only_the_same_people():
    """Runs joined by --merge: v1's points of other people are not compared with v2's."""
    import cloak_acceptance as ca

    v2 = [x for x in _run() if x["method"] == "v2"]
    v1 = [x for x in _run() if x["method"] == "v1"]
    bars = {b["bar"]: b for b in ca.acceptance_bars([{"identity": "a", "frontier": v2}, {"identity": "b", "frontier": v1}])}
    b = _bar(bars, "v2 beats v1 by >= 10 points of top-1 PSR at equal face PSNR, every evaluator, refine 10")
    assert b["met"] is None and "different people" in b["measured"]


def test_acceptance_report_merges_runs_and_refuses_a_point_measured_twice(tmp_path, capsys):
    """``--frontier --acceptance --report --merge RUN``: acceptance.md from this run and another
    (v1 at budgets the first did not measure); the same point of the same person twice is refused."""
    run, other = tmp_path / "run", tmp_path / "other"
    run.mkdir()
    other.mkdir()
    meta = {"commit": "abc", "date": "2026-12-05", "machine": "m", "command": "c", "faces": "f", "people_range": "p"}
    v2 = [_entry("v2", s, "both", 10, db, psr) for s, db, psr in ((0.5, 42, 0.4), (1.0, 36, 0.9), (1.5, 33, 0.95))]
    v1 = [_entry("v1", s, "both", 10, db, psr) for s, db, psr in ((0.5, 38, 0.5), (1.0, 33, 0.8))]
    (run / "frontier-1-of-1.json").write_text(json.dumps({"meta": meta, "people": [{"identity": "a", "frontier": v2}]}))
    # the other run also measured b, whom this run has not: b's points are left out, and said so
    (other / "frontier-1-of-1.json").write_text(json.dumps({"meta": meta, "people": [
        {"identity": "a", "frontier": v1}, {"identity": "b", "frontier": [_entry("v1", 0.5, "both", 10, 38, 0.0)]}]}))
    assert cloak.frontier_report(run, {"run": "run"}, acceptance=True, merge=[other]) == 0
    assert "1 people of the merged runs are not in run (yet), left out" in capsys.readouterr().err
    md = (run / "acceptance.md").read_text()
    assert "measured at commit abc" in md and "34 dB 93.3 vs 74.0 (+19.3)" in md  # v1's points from the other run
    assert "people in the records: 1" in md
    s = json.loads((run / "frontier.json").read_text())["summary"]
    assert {(p["method"], p["scale"]) for p in s["points"]} == {("v2", 0.5), ("v2", 1.0), ("v2", 1.5), ("v1", 0.5), ("v1", 1.0)}
    (other / "frontier-1-of-1.json").write_text(json.dumps({"meta": meta, "people": [{"identity": "a", "frontier": v2}]}))
    with pytest.raises(SystemExit, match="merge runs that measured different points"):
        cloak.frontier_report(run, {"run": "run"}, acceptance=True, merge=[other])
