"""The expression models (issue 15): the Keras HDF5 port, the crop, the interface, the registry.

tests/data/expression_reference.npz holds five real LFW faces' model inputs (grey 64x64 and 48x48
crops made by faceprot, not photos) and the probabilities that Keras (tf_keras 2.21, loading the
same HDF5 files) gave for them; benchmarks/expression_port_check.py wrote it (BENCHMARKS.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_manifest, shared_path
from faceprot import registry
from faceprot.errors import ModelUnavailableError
from faceprot.expression import (
    CROP_BOX, EMOTIONS, EXPRESSION_MODELS, KerasGraph, KerasMaxPool, expression_input, load_expression_model,
)

REFERENCE = Path(__file__).parent / "data" / "expression_reference.npz"
SIZES = {"expression": 64, "expression-heldout": 48}


def _model(name: str):
    if name == "expression-heldout":
        shared_path("assets", "models", "expression-heldout", "fer2013_mini_xception_48.hdf5")
    return load_expression_model(name)


def test_emotions_follow_fer2013_order():
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    m = load_expression_model()
    assert m.emotions == EMOTIONS and m.index("happy") == 3
    with pytest.raises(ValueError, match="unknown emotion"):
        m.index("joy")


@pytest.mark.parametrize("name", list(SIZES))
def test_both_files_load_with_their_own_input_size(name):
    m = _model(name)
    assert m.input_size == SIZES[name] and m.net.input_shape == (1, SIZES[name], SIZES[name])
    assert not any(p.requires_grad for p in m.parameters())
    # the two files are different graphs: the held-out one has no fourth pooling
    pools = sum(kind == "MaxPooling2D" for kind in m.net.kinds.values())
    assert pools == (4 if name == "expression" else 3)


@pytest.mark.parametrize("name", list(SIZES))
def test_port_matches_keras_on_real_faces(name):
    if name == "expression-heldout":
        _model(name)
    ref = np.load(REFERENCE)
    x = torch.from_numpy(ref[f"input_{name}"])[:, None]
    assert x.shape[-1] == SIZES[name] and -1 <= x.min() and x.max() <= 1
    with torch.no_grad():
        got = torch.softmax(load_expression_model(name).net(x), 1).numpy()
    keras = ref[f"keras_{name}"]
    assert len(set(keras.argmax(1))) >= 3, "the fixture should cover several classes"
    np.testing.assert_allclose(got, keras, atol=2e-6)
    assert (got.argmax(1) == keras.argmax(1)).all()


def test_same_max_pooling_pads_bottom_right_only():
    """Keras/TF 'same' 3x3 stride-2 pooling of an even side pads one cell at the bottom/right; a
    symmetric pad (torch's padding=1) would read a different window for every output."""
    x = torch.arange(16.0).view(1, 1, 4, 4)
    got = KerasMaxPool({"pool_size": [3, 3], "strides": [2, 2], "padding": "same"})(x)
    # windows rows/cols {0,1,2} and {2,3}: maxima at (2,2)=10, (2,3)=11, (3,2)=14, (3,3)=15
    assert got.tolist() == [[[[10.0, 11.0], [14.0, 15.0]]]]
    odd = KerasMaxPool({"pool_size": [3, 3], "strides": [2, 2], "padding": "same"})(torch.arange(25.0).view(1, 1, 5, 5))
    assert odd.shape[-1] == 3 and odd[0, 0, 0, 0] == 6.0  # odd side: one cell each side


@pytest.mark.parametrize("name", list(SIZES))
def test_probabilities_sum_to_one_and_log_probs_agree(name):
    m = _model(name)
    faces = torch.rand(3, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p, lp = m(faces), m.log_probs(faces)
    assert p.shape == (3, 7) and (p >= 0).all()
    torch.testing.assert_close(p.sum(1), torch.ones(3))
    torch.testing.assert_close(lp.exp(), p)


@pytest.mark.parametrize("name", list(SIZES))
def test_gradients_reach_the_canonical_face_inside_the_crop_only(name):
    m = _model(name)
    faces = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1), requires_grad=True)
    m.log_probs(faces)[:, EMOTIONS.index("happy")].sum().backward()
    g = faces.grad
    assert torch.isfinite(g).all()
    x0, y0, side = CROP_BOX
    inside = torch.zeros(256, 256, dtype=torch.bool)
    inside[y0:y0 + side, x0:x0 + side] = True
    assert (g[..., inside].abs() > 0).float().mean() > 0.9  # every pixel of the crop counts
    assert (g[..., ~inside] == 0).all()


def test_crop_is_the_dlib_box_grown_to_192_and_covers_the_five_points():
    from faceprot.canonical import CANONICAL_POINTS

    x0, y0, side = CROP_BOX
    assert (x0, y0, side) == (36, 56, 192) and side % 64 == 0 and side % 48 == 0
    assert ((CANONICAL_POINTS >= [x0 + 40, y0 + 40]) & (CANONICAL_POINTS <= [x0 + side - 40, y0 + side - 40])).all()
    # a flat grey face maps to the same grey in [-1, 1] at both sizes
    flat = torch.full((1, 3, 256, 256), 0.25)
    for size in SIZES.values():
        torch.testing.assert_close(expression_input(flat, size), torch.full((1, 1, size, size), -0.5))


def test_crop_of_real_faces_is_what_keras_was_given():
    """Detect and align the fixture's LFW photos again: faceprot's crop reproduces the inputs that
    the Keras reference was run on."""
    from faceprot.canonical import align
    from faceprot.faces import detect_faces
    from faceprot.io import load_image

    ref = np.load(REFERENCE)
    base = shared_path("assets", "faces", "lfw")
    photos = [load_image(str(base / f)).rgb for f in ref["files"]]
    faces = torch.cat([align(rgb, detect_faces(rgb)[0].transform) for rgb in photos])
    for name, size in SIZES.items():
        got = expression_input(faces, size)[:, 0].numpy()
        np.testing.assert_allclose(got, ref[f"input_{name}"], atol=1e-5)


def test_real_faces_read_different_expressions(lfw_manifest):
    """On a dozen LFW people the models' top classes are not all one class."""
    from faceprot.canonical import align
    from faceprot.faces import detect_faces
    from faceprot.io import load_image

    faces, seen = [], set()
    for e in lfw_manifest[200:]:  # not the fixture's people
        if e["identity"] in seen:
            continue
        rgb = load_image(e["path"]).rgb
        found = detect_faces(rgb)
        if len(found) == 1:
            seen.add(e["identity"])
            faces.append(align(rgb, found[0].transform))
        if len(faces) == 12:
            break
    x = torch.cat(faces)
    for name in SIZES:
        with torch.no_grad():
            p = _model(name)(x)
        top = p.argmax(1)
        assert len(set(top.tolist())) >= 2, f"{name} reads every face as {EMOTIONS[top[0]]}"
        assert p.max(1).values.min() < 0.99  # and not as a saturated one-hot


def test_load_is_cached_per_name_and_device():
    assert load_expression_model() is load_expression_model("expression", "cpu")
    assert load_expression_model("expression", torch.device("cpu")) is load_expression_model()
    with pytest.raises(ModelUnavailableError, match="Unknown expression model"):
        load_expression_model("fer")


def test_heldout_is_mirror_only_and_for_judging(monkeypatch, tmp_path):
    e = registry.entry("expression-heldout")
    assert "judging only" in e.note and e.repo_id is None and e.files[0].sha256
    assert EXPRESSION_MODELS["expression-heldout"].registry_key == "expression-heldout"
    monkeypatch.setenv(registry.MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="FACEPROT_MODEL_DIR/expression-heldout"):
        registry.resolve("expression-heldout", "fer2013_mini_xception_48.hdf5")
    assert registry.availability("expression") == (True, "shipped with faceprot")


def test_a_file_that_is_not_a_keras_model_is_refused(tmp_path):
    import h5py

    path = tmp_path / "not_keras.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ModelUnavailableError, match="not a Keras HDF5 model"):
        KerasGraph(path)


@pytest.mark.slow
def test_port_check_benchmark_dumps_and_sweeps_crops(tmp_path):
    """benchmarks/expression_port_check.py's faceprot-side steps, on a few real faces (the
    compare step needs the separate Keras/TFLite venv; BENCHMARKS.md has its run)."""
    import sys

    from conftest import ROOT

    shared_path("assets", "faces", "lfw")
    _model("expression-heldout")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import expression_port_check as bench

    out = tmp_path / "inputs.npz"
    assert bench.main(["dump", str(out), "--faces", "4"]) == 0
    d = np.load(out)
    assert d["input_expression"].shape == (4, 64, 64) and d["input_expression-heldout"].shape == (4, 48, 48)
    with torch.no_grad():
        again = torch.softmax(load_expression_model().net(torch.from_numpy(d["input_expression"])[:, None]), 1)
    np.testing.assert_allclose(d["ours_expression"], again.numpy(), atol=1e-6)
    assert bench.main(["crops", "--faces", "4", "--json", str(tmp_path / "crops.json")]) == 0
    report = json.loads((tmp_path / "crops.json").read_text())
    assert report["faces"] == 4 and "side 192 at (36, 56)" in report
