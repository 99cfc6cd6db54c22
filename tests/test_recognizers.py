"""Surrogates and evaluators: real recognizers on real faces, thresholds measured on LFW."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tiny_models import tiny_iresnet

from faceprot import registry
from faceprot.canonical import CANONICAL_SIZE
from faceprot.datasets import embed_photos
from faceprot.errors import ModelUnavailableError
from faceprot.evaluators import (
    compare_photos, get_evaluator, role_of,
)
from faceprot.io import load_image
from faceprot.metrics import from_similarity, pair_similarities, rate_at, roc_auc, threshold_at_far
from faceprot.recognizers import load_surrogate
from faceprot.recognizers.base import arcface_crop
from faceprot.report import format_table

FAR = 1e-3


@pytest.fixture(scope="session")
def lfw_embeddings(lfw_manifest):
    """LFW embeddings for dlib-resnet and mobilefacenet, computed once per test run (~1 min)."""
    emb, found = embed_photos([e["path"] for e in lfw_manifest], ["dlib-resnet", "mobilefacenet"])
    return emb, found, [e["identity"] for e in lfw_manifest]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dlib-resnet", "mobilefacenet"])
def test_lfw_auc_and_recorded_threshold(lfw_embeddings, name):
    emb, found, ids = lfw_embeddings
    assert found.mean() > 0.98, "faceprot's detector should find nearly every LFW face"
    ok = ~np.isnan(emb[name]).any(1)
    metric = get_evaluator(name).metric
    pos, neg = pair_similarities(emb[name][ok], [i for i, k in zip(ids, ok) if k], metric)
    assert len(pos) > 2500 and len(neg) > 1_000_000  # all pairs of 300 people x 5 photos
    auc = roc_auc(pos, neg)
    measured = from_similarity(threshold_at_far(neg, FAR), metric)
    recorded = load_surrogate(name).threshold.value
    t_rec = recorded if metric == "cosine" else -recorded
    print(f"{name}: AUC {auc:.4f}, threshold measured {measured:.4f} recorded {recorded:.4f}, "
          f"TAR {rate_at(pos, t_rec):.4f} FAR {rate_at(neg, t_rec):.2e}")
    assert auc >= 0.99
    # the constant in the code is the one this data gives (re-run benchmarks/lfw_verification.py)
    assert abs(measured - recorded) < 0.005
    assert rate_at(neg, t_rec) <= 1.2 * FAR
    assert rate_at(pos, t_rec) > 0.85


def test_metrics_on_a_known_case():
    pos, neg = np.array([0.9, 0.8, 0.3]), np.array([0.1, 0.2, 0.3, 0.5])
    # pairs pos>neg: 0.9,0.8 beat all 4 (8); 0.3 beats 2, ties 1 -> 2.5; total 10.5 / 12
    assert roc_auc(pos, neg) == pytest.approx(10.5 / 12)
    t = threshold_at_far(np.linspace(0, 1, 1001), 0.01)
    assert rate_at(np.linspace(0, 1, 1001), t) <= 0.01 < rate_at(np.linspace(0, 1, 1001), t - 1e-3)


@pytest.mark.parametrize("name", ["dlib-resnet", "mobilefacenet"])
def test_surrogate_batches_and_gradients_reach_the_canonical_face(lfw_manifest, name):
    from faceprot.canonical import align
    from faceprot.faces import find_faces

    rgbs = [load_image(e["path"]).rgb for e in lfw_manifest[:3]]
    x = torch.cat([align(r, find_faces(r)[0].transform) for r in rgbs]).requires_grad_(True)
    model = load_surrogate(name)
    emb = model(x)
    assert emb.shape[0] == 3 and torch.isfinite(emb).all()
    # batched == one at a time
    one = torch.cat([model(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(emb, one, atol=1e-4, rtol=1e-4)
    emb.pow(2).sum().backward()
    g = x.grad
    assert torch.isfinite(g).all()
    # every sample gets gradient, and it is concentrated on the face, not the corners
    assert (g.abs().flatten(1).sum(1) > 0).all()
    centre = g[..., 64:192, 64:192].abs().mean()
    corner = g[..., :24, :24].abs().mean()
    assert centre > 10 * corner


@pytest.mark.slow
def test_evaluator_pipeline_agrees_with_dlib_cpp_on_real_pairs(photos_manifest):
    """faceprot's pipeline and dlib's own agree on who is who for real photos."""
    by_id = {}
    for e in photos_manifest:
        by_id.setdefault(e["identity"], []).append(e["path"])
    people = [v for v in by_id.values() if len(v) >= 2][:4]
    agree = total = 0
    for i, paths in enumerate(people):
        a, b = load_image(paths[0]).rgb, load_image(paths[1]).rgb
        other = load_image(people[(i + 1) % len(people)][0]).rgb
        for x, y, same in [(a, b, True), (a, other, False)]:
            scores = {s.evaluator: s for s in compare_photos(x, y, evaluators=["dlib-cpp", "dlib-resnet", "mobilefacenet"])}
            for s in scores.values():
                total += 1
                agree += s.match == same
            # faceprot's alignment and torch port against dlib's own chip and C++ network, pair by
            # pair: the same verdict and nearly the same distance (measured: at most 0.05 apart)
            cpp, ours = scores["dlib-cpp"], scores["dlib-resnet"]
            assert cpp.match == ours.match and abs(cpp.score - ours.score) < 0.08, (cpp.score, ours.score)
    assert agree / total >= 0.9, (agree, total)


def test_compare_table_labels_white_and_black_box(photos_manifest):
    a = load_image(photos_manifest[0]["path"]).rgb
    b = load_image(photos_manifest[1]["path"]).rgb  # both obama
    scores = compare_photos(a, b, surrogates=["dlib-resnet"])
    by = {s.evaluator: s for s in scores}
    assert by["dlib-resnet"].role == "white-box"
    assert by["dlib-cpp"].role == "black-box" and "same network weights" in by["dlib-cpp"].note
    assert by["mobilefacenet"].role == "black-box"
    assert all(s.match for s in scores), format_table(scores)
    table = format_table(scores)
    assert table.count("\n") == len(scores) and "match" in table
    assert role_of("arcface-r100", ["dlib-resnet"])[0] == "black-box"


def _hub_cache_with(tmp_path, repo_id: str, files: dict[str, bytes]):
    """A Hugging Face cache folder holding ``files`` for ``repo_id`` at revision main."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        p = repo / "snapshots" / commit / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return tmp_path / "hub"


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty model mirror, an offline Hub, and a private Hub cache folder to fill."""
    from huggingface_hub import constants

    monkeypatch.setenv("FACEPROT_MODEL_DIR", str(tmp_path / "empty-mirror"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    registry._hub_reachable.cache_clear()
    load_surrogate.cache_clear()
    get_evaluator.cache_clear()
    yield tmp_path
    registry._hub_reachable.cache_clear()
    load_surrogate.cache_clear()
    get_evaluator.cache_clear()


def test_arcface_r100_loads_from_the_hub_cache_through_the_registry(offline_hub):
    """The Hub path: a tiny IResNet ONNX in the standard cache layout loads as the arcface-r100 surrogate."""
    model = tiny_iresnet(size=112, seed=3)
    _hub_cache_with(offline_hub, "FoivosPar/Arc2Face", {"arcface.onnx": model.SerializeToString()})
    assert registry.availability("arcface-r100") == (True, "hub cache")
    sur = load_surrogate("arcface-r100")
    x = torch.rand(3, 3, CANONICAL_SIZE, CANONICAL_SIZE)
    emb = sur(x)
    # the graph normalises its own input (Sub/Mul), so the surrogate must feed raw 0-255 pixels
    crop = (arcface_crop(x) * 255).numpy()
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, {"data": crop[i:i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(emb.detach().numpy(), want, atol=1e-4)
    assert sur.metric == "cosine" and "not measured" in sur.threshold.source


def test_missing_hub_model_gives_a_clear_message_fast(offline_hub):
    import time

    t0 = time.time()
    with pytest.raises(ModelUnavailableError) as e:
        load_surrogate("arcface-r100")
    msg = str(e.value)
    assert "arcface.onnx" in msg and "FoivosPar/Arc2Face" in msg and "FACEPROT_MODEL_DIR" in msg
    assert time.time() - t0 < 5
    with pytest.raises(ModelUnavailableError, match="no known Hub home"):
        registry.resolve("retinaface", "mobilenet0.25_Final.pth")
    ok, why = registry.availability("retinaface")
    assert not ok and "missing" in why
    # MobileFaceNet ships with faceprot: an empty mirror and an offline Hub do not lose it
    assert registry.availability("mobilefacenet") == (True, "shipped with faceprot")
    assert load_surrogate("mobilefacenet").name == "mobilefacenet"
