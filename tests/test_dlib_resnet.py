"""The PyTorch port of dlib's face recognition ResNet against dlib's own C++ network.

Chips come from dlib's own pipeline (HOG detector, 5-point shape predictor, get_face_chip) on real
LFW photos from ../shared, so the port is checked on exactly the inputs dlib users feed it.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from PIL import Image

from faceprot.recognizers.dlib_resnet import MODEL_FILE, MODEL_KEY, DlibResNet, load_dlib_resnet
from faceprot.registry import resolve

dlib = pytest.importorskip("dlib")

N_FACES = 60  # one LFW photo per identity; the parity check needs at least 50
MAX_ABS_ERROR = 1e-4  # on the raw 128-D descriptors; float32 rounding gives ~3e-7


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # 1 thread: the CPU forward is small (about 65 ms for 9 chips) and 2 threads on 2 shared,
    # loaded cores are much slower (FACTS.md section 1).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dat_path():
    return resolve(MODEL_KEY, MODEL_FILE)


@pytest.fixture(scope="module")
def model(dat_path) -> DlibResNet:
    return load_dlib_resnet()  # the registry default, as the app loads it


@pytest.fixture(scope="module")
def chips(lfw_manifest) -> np.ndarray:
    """(N, 150, 150, 3) uint8 RGB chips: the largest HOG face of the first photo of each identity."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(resolve(MODEL_KEY, "shape_predictor_5_face_landmarks.dat")))
    seen, out = set(), []
    for entry in lfw_manifest:
        if entry["identity"] in seen:
            continue
        seen.add(entry["identity"])
        img = np.asarray(Image.open(entry["path"]).convert("RGB"))
        faces = detector(img, 1)
        if not faces:
            continue
        face = max(faces, key=lambda r: r.area())
        out.append(dlib.get_face_chip(img, predictor(img, face), size=150, padding=0.25))
        if len(out) == N_FACES:
            break
    return np.stack(out)


def to_tensor(chips: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    """(N, 150, 150, 3) uint8 -> (N, 3, 150, 150) in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).to(dtype)


@pytest.mark.slow
def test_matches_dlib_cpp_descriptors(model, chips, dat_path):
    assert len(chips) >= 50, f"only {len(chips)} LFW faces were found"
    dlib_net = dlib.face_recognition_model_v1(str(dat_path))
    expected = np.array([dlib_net.compute_face_descriptor(c) for c in chips], dtype=np.float64)

    with torch.no_grad():
        got = model(to_tensor(chips)).double().numpy()  # one batched forward

    err = np.abs(got - expected).max()
    print(f"\ndlib ResNet port vs dlib C++: max abs error {err:.2e} on {len(chips)} LFW faces")
    assert got.shape == (len(chips), 128)
    assert err <= MAX_ABS_ERROR


def test_model_is_frozen_and_in_eval_mode(model):
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 5_614_592  # about 5.6 M, FACTS.md section 2


def test_gradcheck_through_input_subspace(model, chips):
    # float64 gradcheck on a real chip, moved along 3 random pixel directions and read through 2
    # random output directions: a full 67,500 x 128 Jacobian would be far too slow.
    model64 = copy.deepcopy(model).double()
    chip = to_tensor(chips[:1], torch.float64)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(chip.numel(), 3, generator=g, dtype=torch.float64)
    v = torch.randn(128, 2, generator=g, dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return model64(chip + (u @ z).view_as(chip)) @ v

    # Not at z = 0: a flat patch of a uint8 chip gives exactly tied max-pool inputs there, where
    # the max has no derivative. A small random z (pixel dither of std ~0.2) breaks the ties.
    z = (0.1 * torch.randn(3, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(f, (z,))


def test_gradient_wrt_a_real_chip_is_finite_and_nonzero(model, chips):
    x = to_tensor(chips[:1]).requires_grad_(True)
    with torch.no_grad():
        other = model(to_tensor(chips[1:2]))
    torch.linalg.vector_norm(model(x) - other).backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().max() > 0


def test_rejects_wrong_input_shape(model):
    with pytest.raises(ValueError, match="150, 150"):
        model(torch.zeros(1, 3, 112, 112))


def _bad_files(dat_path):
    data = dat_path.read_bytes()
    rng = np.random.default_rng(0)
    for n in (0, 5, 300, 20_000, len(data) // 2, len(data) - 1):
        yield f"truncated to {n} bytes", data[:n], "truncated"
    yield "trailing byte", data + b"\x00", "left after the last layer"
    yield "random bytes", rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes(), "not a dlib face"
    shape_predictor = resolve(MODEL_KEY, "shape_predictor_5_face_landmarks.dat")
    yield "another dlib file", shape_predictor.read_bytes(), "not a dlib face"


def test_malformed_files_raise_a_clear_value_error(dat_path, tmp_path):
    for name, data, message in _bad_files(dat_path):
        p = tmp_path / "bad.dat"
        p.write_bytes(data)
        start = time.perf_counter()
        with pytest.raises(ValueError, match=message) as info:
            load_dlib_resnet(p)
        assert time.perf_counter() - start < 2.0, name
        assert "dlib face recognition ResNet" in str(info.value), name
