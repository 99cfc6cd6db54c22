"""Smoke tests of every mode of benchmarks/disguise.py (the emotion disguise benchmark), on one or
two real LFW people with 2-3 optimisation steps:

* ``--tune`` on one tuning person over a two-point grid: its shard and the chosen weight;
* the acceptance mode as two shards (every row and both target modes on person 0; two rows,
  dodging only, on person 1) that reads that weight, then ``--resume`` (nothing rerun, the shard
  not rewritten) and ``--report`` (the merge: counts add up, McNemar pairs the rows);
* ``--caricatures`` and ``--look`` on that run: the crops, their kinds and the private key;
* ``--quick`` as CI runs it (8 people, 40 steps), in a subprocess, within 10 minutes;
* and, without models, the McNemar p-values and a missing faces folder.

Runs write under ``benchmarks/results/disguise/smoke-*`` or ``ci-quick`` (git-ignored); the smoke
runs' names end in the xdist worker's, so two workers that both need a module fixture never share
its folder. All but ``--quick`` call ``disguise.main`` in this process, so the models load once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, shared_path

sys.path.insert(0, str(ROOT / "benchmarks"))
import disguise  # noqa: E402
from _common import RESULTS  # noqa: E402
import disguise_report  # noqa: E402
from disguise_report import mcnemar_exact  # noqa: E402
from faceprot.evaluators import role_of  # noqa: E402

JUDGES = {"dlib-cpp", "dlib-resnet", "mobilefacenet"}


def _fresh_dir(run: str):
    assert run.startswith("smoke-"), "smoke runs must stay git-ignored"
    out = RESULTS / "disguise" / f"{run}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    shutil.rmtree(out, ignore_errors=True)
    return out


def test_mcnemar_exact_p_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact(3, 3) == 1.0  # capped


def test_missing_faces_folder_is_reported_and_exits_0(tmp_path, capsys):
    assert disguise.main(["--faces", str(tmp_path / "absent"), "--run", "smoke-absent"]) == 0
    assert "no faces folder" in capsys.readouterr().out
    assert not (RESULTS / "disguise" / "smoke-absent").exists()


@pytest.fixture(scope="module")
def tuned():
    """--tune on the first tuning person, grid 0.5 and 2, 2 steps: writes the chosen weight."""
    shared_path("assets", "faces", "lfw")
    out = _fresh_dir("smoke-disguise-tune")
    assert disguise.main(["--tune", "--people", "1", "--steps", "2", "--grid", "0.5,2", "--run", out.name]) == 0
    return out


@pytest.mark.slow
def test_tune_writes_its_grid_and_choice(tuned):
    shard = json.loads((tuned / "tune-1-of-1.json").read_text())
    names = disguise.people(disguise.load_faceset(shard["meta"]["faces"]))
    (rec,) = shard["people"]
    assert rec["identity"] == names[150] and rec["position"] == 150  # the tuning split's first person
    assert [(r["projection"], r["identity_weight"]) for r in rec["runs"]] == [("sum", 0.5), ("sum", 2.0), ("gradvac", 1.0)]
    for r in rec["runs"]:
        assert set(r["identity"]) == {"dlib-resnet", "mobilefacenet"}  # dlib-cpp only judges
        assert set(r["expression"]) == {"expression"}  # and so does the held-out model
        assert r["steps"] == 2 and r["landmark"]["measurable"]
    assert set(rec["clean"]["top"]) == {"expression"}
    t = json.loads((tuned / "tuned.json").read_text())
    assert t["identity_weight"] in (0.5, 2.0)
    grid = {(g["projection"], g["identity_weight"]): g for g in t["summary"]["grid"]}
    assert set(grid) == {("sum", 0.5), ("sum", 2.0), ("gradvac", 1.0)}
    for g in grid.values():
        assert g["probes"] == 1 and 0 <= g["joint"] <= g["eligible"] <= 1
    best = max(g["joint"] / g["eligible"] if g["eligible"] else 0 for k, g in grid.items() if k[0] == "sum")
    chosen = grid[("sum", t["identity_weight"])]
    assert (chosen["joint"] / chosen["eligible"] if chosen["eligible"] else 0) == best
    assert f"Chosen: identity_weight {t['identity_weight']:g}" in (tuned / "tune.md").read_text()


@pytest.fixture(scope="module")
def acceptance(tuned):
    """Two shards of an acceptance run of people 2 and 3 (the first two that the white-box model does
    not call happy when clean, so the expression columns count): person 2 with every row and both
    target modes, person 3 with the both and sum rows, dodging only, happy and sad (which the
    landmark measure cannot judge)."""
    out = _fresh_dir("smoke-disguise")
    tuned_file = str(tuned / "tuned.json")
    first = ["--start", "2", "--people", "2", "--steps", "2", "--shard", "1/2", "--run", out.name, "--tuned", tuned_file]
    second = ["--start", "2", "--people", "2", "--steps", "2", "--shard", "2/2", "--rows", "both,sum", "--targets", "none",
              "--emotions", "happy,sad", "--run", out.name, "--tuned", tuned_file]
    t = time.perf_counter()
    assert disguise.main(first) == 0
    print(f"one person, every row and target mode, 2 steps: {time.perf_counter() - t:.0f} s")
    assert disguise.main(second) == 0
    return out, first, json.loads((tuned / "tuned.json").read_text())["identity_weight"]


def _check_run(r: dict, target: bool, measurable: bool = True) -> None:
    assert "error" not in r, r
    assert set(r["identity"]) == JUDGES
    for j, v in r["identity"].items():
        assert v["role"] == role_of(j, r["surrogates"])[0]
        if v["found"]:
            assert v["top5"] <= v["top1"] and 0 <= v["verif_protected"] <= v["verif_pairs"]
            assert ("target_top1" in v) == target and ("target_verified" in v) == target
    assert set(r["expression"]) == {"expression", "expression-heldout", "heldout_warp", "heldout_warp_jpeg75"}
    for e in r["expression"].values():
        if e["found"]:
            assert len(e["probs"]) == 7 and abs(sum(e["probs"]) - 1) < 1e-3
    if measurable:
        assert r["landmark"]["measurable"] and isinstance(r["landmark"]["passed"], bool)
    else:
        assert r["landmark"] == {"measurable": False, "passed": None, "why": r["landmark"]["why"]}
    assert r["max_move_iod"] <= 0.12 + 1e-6 and r["min_det"] > 0.3 - 1e-6
    q = r["quality"]
    assert 20 < q["psnr_face"] < 60 and 0.5 < q["ssim_face"] <= 1, q
    assert r["seconds"] > 0 and r["steps"] == 2


@pytest.mark.slow
def test_acceptance_shards_hold_every_probe_record(acceptance):
    out, first, weight = acceptance
    s1 = json.loads((out / "shard-1-of-2.json").read_text())
    s2 = json.loads((out / "shard-2-of-2.json").read_text())
    names = disguise.people(disguise.load_faceset(s1["meta"]["faces"]))
    (p0,), (p1,) = s1["people"], s2["people"]
    assert (p0["position"], p0["identity"]) == (2, names[2]) and (p1["position"], p1["identity"]) == (3, names[3])
    assert p0["target"]["identity"] == names[3]  # the next acceptance person
    assert p0["clean"]["top"]["expression"] != "happy" != p1["clean"]["top"]["expression"]
    assert s1["meta"]["command"] == "python benchmarks/disguise.py " + " ".join(first)
    assert s1["meta"]["sum_weight"]["identity_weight"] == weight and re.fullmatch(r"[0-9a-f]{10}(\+dirty)?", s1["meta"]["commit"])
    assert set(s1["meta"]["thresholds"]) == JUDGES
    # every row in both target modes for person 0, in order
    keys = [(r["target"], r["row"]) for r in p0["runs"]]
    assert keys == [(t, row) for t in ("none", "next") for row in disguise.ROWS]
    for r in p0["runs"]:
        _check_run(r, r["target"] == "next")
        assert (out / "images" / f"{r['row']}__{r['target']}__happy" / f"{names[2]}.png").is_file()
    runs = {(r["target"], r["row"]): r for r in p0["runs"]}
    assert runs[("none", "warp")]["eps"] == 0 and runs[("none", "perturbation")]["warp"] is False
    assert runs[("none", "perturbation")]["max_move_iod"] == 0
    assert (runs[("none", "sum")]["projection"], runs[("none", "sum")]["identity_weight"]) == ("sum", weight)
    assert runs[("none", "both")]["projection"] == "gradvac"
    t = runs[("none", "both")]["template"]  # the template baseline, scaled to the optimised warp's mean move
    assert t["mean_move_px"] <= t["optimised_mean_move_px"] + 1e-3 and t["scale"] > 0
    assert t["expression"]["expression"]["found"] and "heldout_jpeg75" in t["expression"]
    assert "template" not in runs[("none", "sum")]
    assert runs[("none", "only-dlib-resnet")]["surrogates"] == ["dlib-resnet"]
    assert runs[("none", "only-mobilefacenet")]["identity"]["dlib-cpp"]["role"] == "black-box"
    assert runs[("none", "only-mobilefacenet")]["identity"]["dlib-resnet"]["role"] == "black-box"
    assert [(r["emotion"], r["row"]) for r in p1["runs"]] == [(e, row) for e in ("happy", "sad") for row in ("both", "sum")]
    for r in p1["runs"]:
        _check_run(r, False, measurable=r["emotion"] == "happy")


@pytest.mark.slow
def test_resume_reruns_nothing(acceptance, capsys):
    out, first, _ = acceptance
    f = out / "shard-1-of-2.json"
    before = (f.stat().st_mtime_ns, f.read_bytes())
    t = time.perf_counter()
    assert disguise.main(first + ["--resume"]) == 0
    assert time.perf_counter() - t < 30, "--resume disguised the person again"
    assert (f.stat().st_mtime_ns, f.read_bytes()) == before
    assert f"Run `{out.name}`: 1 people" in capsys.readouterr().out


@pytest.mark.slow
def test_report_merges_the_shards(acceptance, capsys):
    out, _, weight = acceptance
    started = time.time()
    assert disguise.main(["--report", "--run", out.name]) == 0
    for name in ("report.md", "report.json"):
        assert (out / name).stat().st_mtime >= started - 1
    rep = json.loads((out / "report.json").read_text())
    s, meta = rep["summary"], rep["meta"]
    people = [json.loads((out / f"shard-{i}-of-2.json").read_text())["people"][0] for i in (1, 2)]
    assert s["people"] == 2 and set(s["judges"]) == JUDGES and "--shard 2/2" in meta["command"]
    groups = {(g["emotion"], g["target"], g["row"]): g for g in s["groups"]}
    assert set(groups) == ({("happy", t, row) for t in ("none", "next") for row in disguise.ROWS}
                           | {("sad", "none", "both"), ("sad", "none", "sum")})
    for key, g in groups.items():
        members = [p for p in people if any(disguise_report._key(r) == key for r in p["runs"])]
        assert g["probes"] == len(members) == (2 if key in {("happy", "none", "both"), ("happy", "none", "sum")} else 1)
        runs = [r for p in members for r in p["runs"] if disguise_report._key(r) == key]
        emotion, t, row = key
        for j in JUDGES:  # the counts are the records' (no face: not protected)
            v = g["identity"][j]
            assert v["dodged"] == sum(r["identity"][j]["found"] and r["identity"][j]["top1"] for r in runs)
            assert v["no_face"] == sum(not r["identity"][j]["found"] for r in runs)
            assert ("impersonated" in v) == (t == "next")
        elig = [p for p in members if p["clean"]["top"]["expression"] != emotion]
        e = g["expression"]
        assert e["eligible"] == len(elig) and 0 <= e["expression"] <= e["eligible"]
        assert 0 <= e["heldout_warp_jpeg75"] <= e["heldout_eligible"] <= e["eligible"]
        if emotion == "happy":
            assert 0 <= g["joint"] <= e["landmark"] <= e["eligible"]
        else:
            assert g["joint"] is None and e["landmark"] is None and g["not_measurable"]
        assert g["psnr_face"] == pytest.approx(np.mean([r["quality"]["psnr_face"] for r in runs]))
    (c,) = [c for c in s["projection_vs_sum"] if c["target"] == "none"]  # happy only: sad is not measurable
    assert c["emotion"] == "happy" and c["sum_identity_weight"] == weight
    assert c["probes"] == groups[("happy", "none", "both")]["expression"]["eligible"] == 2
    assert c["gradvac"] == groups[("happy", "none", "both")]["joint"] and c["sum"] == groups[("happy", "none", "sum")]["joint"]
    assert c["p_mcnemar"] == mcnemar_exact(c["only_gradvac"], c["only_sum"])
    md = (out / "report.md").read_text()
    assert capsys.readouterr().out == md + "\n"
    assert "| happy | next | only-mobilefacenet | mobilefacenet | dlib-resnet | black-box |" in md
    assert "McNemar" in md and "sad is not measurable" in md


@pytest.mark.slow
def test_caricatures_and_the_blind_look(acceptance, capsys):
    out, _, _ = acceptance
    assert disguise.main(["--caricatures", "1", "--steps", "3", "--run", out.name]) == 0
    made = json.loads((out / "caricatures.json").read_text())["caricatures"]
    assert len(made) == 1 and made[0]["max_move_iod"] <= 0.12 + 1e-6 and made[0]["min_det"] >= 0.3 - 1e-6
    assert made[0]["p_emotion"]["caricature"] > made[0]["p_emotion"]["clean"]
    assert (out / made[0]["png"]).is_file()
    for _ in range(2):  # a second look replaces the first
        assert disguise.main(["--look", "--look-count", "2", "--run", out.name]) == 0
    key = json.loads((out / "look-key.json").read_text())
    crops = sorted((out / "look").glob("*.png"))
    assert sorted(p.name for p in crops) == sorted(key["crops"]) and not key["skipped"]
    kinds = [v["kind"] for v in key["crops"].values()]
    assert (kinds.count("disguise"), kinds.count("real"), kinds.count("caricature")) == (2, 2, 1)
    for p in crops:
        assert re.fullmatch(r"[0-9a-f]{12}\.png", p.name)
        assert np.asarray(Image.open(p)).shape == (256, 256, 3)
    assert "5 crops in" in capsys.readouterr().out
    answers = {n: {"look": "distorted" if v["kind"] == "caricature" else "natural",
                   "expression": "happy" if v["kind"] == "disguise" else "neutral"} for n, v in key["crops"].items()}
    (out / "answers.json").write_text(json.dumps(answers))
    assert disguise.main(["--look-score", str(out / "answers.json"), "--run", out.name]) == 0
    score = json.loads((out / "look-score.json").read_text())
    assert score["kinds"]["disguise"] == {"crops": 2, "natural": 2, "distorted": 0, "expressions": {"happy": 2}}
    assert score["verdict"] == {"control_holds": True, "disguise_natural": True, "disguise_happy": True, "met": True}
    answers[next(n for n, v in key["crops"].items() if v["kind"] == "caricature")]["look"] = "natural"
    (out / "answers.json").write_text(json.dumps(answers))
    disguise.main(["--look-score", str(out / "answers.json"), "--run", out.name])
    assert json.loads((out / "look-score.json").read_text())["verdict"]["control_holds"] is False
    assert "the look does not count" in capsys.readouterr().out


@pytest.mark.slow
def test_quick_runs_to_its_report_within_10_minutes():
    shared_path("assets", "faces", "lfw")
    report = RESULTS / "disguise" / "ci-quick" / "report.json"
    started = time.time()
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "benchmarks/disguise.py", "--quick", "--run", "ci-quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=10 * 60)
    print(proc.stdout[-3000:])
    print(f"benchmarks/disguise.py --quick took {time.perf_counter() - t:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report.stat().st_mtime >= started - 1, "the run did not write a fresh report"
    s = json.loads(report.read_text())["summary"]
    (g,) = s["groups"]
    assert s["people"] == g["probes"] == 8 and (g["emotion"], g["target"], g["row"]) == ("happy", "none", "both")
    assert g["errors"] == 0 and set(g["identity"]) == JUDGES and g["projection"] == "gradvac"
    assert s["projection_vs_sum"] == []
    for line in ("dlib-resnet dodging top-1", "landmark measure"):
        assert re.search(rf"^ok   {line}", proc.stdout, re.M), proc.stdout[-2000:]
