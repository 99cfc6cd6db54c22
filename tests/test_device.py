"""Where the optimisation runs: the CPU everywhere, a CUDA GPU where there is one (the Space).

The device choice is tested here on any machine. The GPU tests run the real surrogates and the
universal cloak on real LFW faces on CUDA and hold them against the CPU; they skip, with the
reason, on a machine without a GPU.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aligned_faces import ENV as ALIGNED_ENV
from aligned_faces import aligned_people
from faceprot.attack import similarity
from faceprot.cli import main as cli_main
from faceprot.errors import FaceprotError
from faceprot.recognizers import DEFAULT_SURROGATES, load_surrogate
from faceprot.runtime import DEVICE_ENV, resolve_device

GPU = "cuda"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")


def test_device_choice(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == auto
    assert resolve_device("auto").type == auto
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device() == torch.device("cpu")  # the variable overrides auto
    assert resolve_device("auto").type == auto  # but not an explicit choice
    for bad, words in [("gpu0", "Unknown device"), ("meta", "not supported")]:
        with pytest.raises(FaceprotError, match=words):
            resolve_device(bad)
    monkeypatch.setenv(DEVICE_ENV, "gpu0")
    with pytest.raises(FaceprotError, match=f"^{DEVICE_ENV}=gpu0: Unknown device"):
        resolve_device()  # the message says where the bad value came from
    if not torch.cuda.is_available():
        with pytest.raises(FaceprotError, match="has none"):
            resolve_device("cuda")
    else:
        with pytest.raises(FaceprotError, match="no GPU 99"):
            resolve_device("cuda:99")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cli_asks_for_a_missing_gpu_clearly(tmp_path, capsys, lfw_manifest):
    rc = cli_main(["enroll", lfw_manifest[0]["path"], "-o", str(tmp_path / "me.faceprot"), "--device", "cuda"])
    assert rc == 2
    assert "has none" in capsys.readouterr().err
    assert not (tmp_path / "me.faceprot").exists()


def test_one_surrogate_per_device():
    a = load_surrogate("dlib-resnet")
    assert load_surrogate("dlib-resnet", "cpu") is a
    assert load_surrogate("dlib-resnet", torch.device("cpu")) is a
    assert a.device == torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# On a GPU: real surrogates and the real optimiser, against the CPU
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def people(request) -> dict:
    if os.environ.get(ALIGNED_ENV):
        return aligned_people()
    return aligned_people(request.getfixturevalue("lfw_manifest"))


def _tensor(faces: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() / 255


@needs_gpu
@pytest.mark.parametrize("name", DEFAULT_SURROGATES)
def test_surrogate_on_gpu_matches_cpu(people, name):
    x = _tensor(np.concatenate([f for f, _ in people.values()]))
    cpu, gpu = load_surrogate(name), load_surrogate(name, GPU)
    assert gpu is not cpu and gpu.device.type == GPU and cpu.device.type == "cpu"
    e_cpu = cpu(x)
    e_gpu = gpu(x.to(GPU)).cpu()
    cos = F.cosine_similarity(e_cpu, e_gpu, dim=-1)
    # Scores between every pair of faces, as verification sees them.
    s_cpu, s_gpu = cpu.score(e_cpu[:, None], e_cpu[None]), cpu.score(e_gpu[:, None], e_gpu[None])
    # And the input gradient the cloak follows.
    xg = x[:4].clone().requires_grad_(True)
    (g_cpu,) = torch.autograd.grad(cpu(xg).square().sum(), xg)
    xg = x[:4].to(GPU).requires_grad_(True)
    (g_gpu,) = torch.autograd.grad(gpu(xg).square().sum(), xg)
    g_cos = F.cosine_similarity(g_cpu.flatten(1), g_gpu.cpu().flatten(1), dim=-1)
    print(f"{name}: embedding cosine CPU/GPU min {cos.min():.6f}, score max diff "
          f"{(s_cpu - s_gpu).abs().max():.2e}, gradient cosine min {g_cos.min():.5f}")
    assert cos.min() > 0.9999
    assert (s_cpu - s_gpu).abs().max() < 2e-3
    assert g_cos.min() > 0.99


def _cloak_inputs(people, device):
    """One person's selfie (and its mirror) as views, the medium budget, clean embeddings and
    anchors from four other people, for surrogates on ``device``."""
    from faceprot.cloak.anchors import AnchorGallery, choose_anchors
    from faceprot.cloak.enroll import config_for
    from faceprot.cloak.focus import budget_map
    from faceprot.cloak.optimizer import UniversalCloak

    names = list(people)
    faces, marks = people[names[0]]
    cfg = config_for("medium")
    focus = budget_map(faces[0], marks[0], cfg.eps, cfg.eps_high)
    views = _tensor(np.stack([faces[0], faces[0][:, ::-1]]))
    models = [load_surrogate(n, device) for n in DEFAULT_SURROGATES]
    cloak = UniversalCloak(models, cfg)
    person = cloak.person_embeddings(views)
    gallery = AnchorGallery.from_images(np.concatenate([people[n][0][:1] for n in names[1:5]]))
    anchors = choose_anchors(person, models, gallery)
    return cloak, views, torch.from_numpy(focus.budget)[None], anchors, person, faces[1:]


@needs_gpu
def test_universal_cloak_on_gpu_protects_as_on_cpu(people):
    runs = {}
    for label, device in (("cpu", "cpu"), ("gpu", GPU)):
        cloak, views, budget, anchors, person, probes = _cloak_inputs(people, device)
        assert all(v.device.type == "cpu" for v in person.values())
        t = time.perf_counter()
        result = cloak(views, budget, anchors, person, seed=0)
        runs[label] = (result, time.perf_counter() - t)
    d_cpu, d_gpu = runs["cpu"][0].delta, runs["gpu"][0].delta
    assert d_gpu.device.type == "cpu" and d_gpu.shape == (3, 256, 256)
    assert (d_gpu.abs() <= budget + 1e-6).all()
    assert runs["gpu"][0].attention.shape == (256, 256)
    # Judged on the CPU models, on the person's other photos (never seen by the optimiser).
    x = _tensor(probes)
    drops = {}
    for name in DEFAULT_SURROGATES:
        s = load_surrogate(name)
        with torch.no_grad():
            clean = similarity(s, s(x), person[name][None])
            drops[name] = {dev: float((clean - similarity(s, s((x + d).clamp(0, 1)), person[name][None])).mean())
                           for dev, d in (("cpu", d_cpu), ("gpu", d_gpu))}
    agree = float((d_cpu.sign() == d_gpu.sign()).float().mean())
    print(f"cloak: CPU {runs['cpu'][1]:.2f} s, GPU {runs['gpu'][1]:.2f} s; loss CPU "
          f"{runs['cpu'][0].losses[-1]:.3f} GPU {runs['gpu'][0].losses[-1]:.3f}; sign agreement {agree:.3f}; "
          f"similarity drop on other photos {drops}")
    for name, d in drops.items():
        assert d["cpu"] > 0 and d["gpu"] > 0.6 * d["cpu"], name
    losses = runs["gpu"][0].losses
    assert losses[-1] < losses[0]
    assert abs(losses[-1] - runs["cpu"][0].losses[-1]) < 0.25 * abs(losses[0] - runs["cpu"][0].losses[-1])


@needs_gpu
def test_refinement_on_gpu(people):
    from faceprot.cloak.optimizer import refine_delta

    cloak, views, budget, anchors, person, probes = _cloak_inputs(people, GPU)
    base = cloak(views, budget, anchors, person, seed=0).delta
    x = _tensor(probes[:1])
    models = [load_surrogate(n, GPU) for n in DEFAULT_SURROGATES]
    refined = refine_delta(x, base, budget, models, steps=3, alpha=2 / 255, seed=1)
    assert refined.device.type == "cpu" and (refined.abs() <= budget + 1e-6).all()
    assert not torch.equal(refined, base)
    s = load_surrogate("dlib-resnet")
    with torch.no_grad():
        own = s(x)
        sim_base = float(similarity(s, s((x + base).clamp(0, 1)), own))
        sim_refined = float(similarity(s, s((x + refined).clamp(0, 1)), own))
    print(f"refine on GPU: dlib-resnet similarity to the clean photo {sim_base:.3f} -> {sim_refined:.3f}")
    assert sim_refined < sim_base


def test_a_gpu_that_fails_mid_run_fails_that_photo_clearly_and_the_others_go_on(tmp_path, capsys, monkeypatch):
    """A GPU that runs out of memory (or hits a CUDA error) on one photo is a FAIL line that says
    what to do; the other photos are still protected; at enrollment it is an error line, exit 2.
    Any other RuntimeError is a bug and keeps its traceback."""
    import faceprot.cloak as cloak
    from faceprot.cli import gpu_failure

    real = cloak.apply_mask
    failing = {"obama-2.jpg": torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
               "biden.jpg": RuntimeError("CUDA error: an illegal memory access was encountered")}

    def apply_mask(photo, *a, **kw):
        if Path(photo).name in failing:
            raise failing[Path(photo).name]
        return real(photo, *a, **kw)

    monkeypatch.setattr(cloak, "apply_mask", apply_mask)
    photos = [EXAMPLES / n for n in ("obama-1.jpg", "obama-2.jpg", "biden.jpg")]
    rc = cli_main(["apply", str(EXAMPLES / "obama-selfie.faceprot"), *map(str, photos), "-o", str(tmp_path),
                   "--refine", "0", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert (tmp_path / "obama-1-protected.png").exists()
    assert not (tmp_path / "obama-2-protected.png").exists() and not (tmp_path / "biden-protected.png").exists()
    assert "FAIL" in out and "the GPU ran out of memory (CUDA out of memory." in out and "--device cpu" in out
    assert "the GPU failed (CUDA error: an illegal memory access" in out
    assert "1 of 3 photo(s) protected" in out and "obama-2.jpg, " in err

    monkeypatch.setattr(cloak, "apply_mask", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("shapes do not match")))
    with pytest.raises(RuntimeError, match="shapes do not match"):  # not the GPU: a bug, not a FAIL line
        cli_main(["apply", str(EXAMPLES / "obama-selfie.faceprot"), str(photos[0]), "-o", str(tmp_path / "b"),
                  "--refine", "0"])
    assert gpu_failure(ValueError("CUDA")) is None

    def enroll(*a, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    monkeypatch.setattr(cloak, "enroll", enroll)
    rc = cli_main(["enroll", str(EXAMPLES / "obama-selfie.jpg"), "-o", str(tmp_path / "me.faceprot")])
    assert rc == 2 and "error: the GPU ran out of memory" in capsys.readouterr().err
    assert not (tmp_path / "me.faceprot").exists()
