"""ONNX -> torch converter: the real MobileFaceNet on real LFW faces, a tiny IResNet-shaped graph
built here (the layout of insightface's arcface.onnx / glintr100.onnx, which cannot be downloaded
here), and single operators with awkward attributes. onnxruntime is the reference throughout, run one
sample at a time on graphs exported with a fixed batch of 1, while torch gets the whole batch.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import shared_path
from onnx import TensorProto, helper, numpy_helper
from tiny_models import tiny_iresnet
from PIL import Image

from faceprot import registry
from faceprot.recognizers.onnx_torch import onnx_to_torch

TOL = 1e-4  # max abs error allowed between torch (batched) and onnxruntime (per sample)
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)  # FACTS.md section 4
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def ort_per_sample(model: onnx.ModelProto | str, x: np.ndarray) -> np.ndarray:
    """onnxruntime on each sample of ``x`` separately ((B, ...) -> outputs stacked on axis 0)."""
    src = model if isinstance(model, str) else model.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: old-opset test graphs make it warn
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.stack([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def max_err(torch_out: torch.Tensor, ort_out: np.ndarray) -> float:
    got = torch_out.detach().numpy().reshape(len(ort_out), -1)
    return float(np.abs(got - ort_out.reshape(len(ort_out), -1)).max())


# --------------------------------------------------------------------------------------------
# MobileFaceNet (real weights, external data) on real faces
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mobilefacenet_path() -> str:
    shared_path("assets", "models", "mobilefacenet", "MobileFaceNet.onnx")  # skips without ../shared
    onnx_file = registry.resolve("mobilefacenet", "MobileFaceNet.onnx")
    data_file = registry.resolve("mobilefacenet", "MobileFaceNet.onnx.data")  # checks its sha256 too
    assert data_file.parent == onnx_file.parent  # external data is read from beside the .onnx
    return str(onnx_file)


def lfw_crops(lfw_manifest: list[dict], identities: int, per_identity: int) -> tuple[torch.Tensor, list[str]]:
    """Centre crops of LFW photos, MobileFaceNet's input: (N, 3, 112, 112), ImageNet-normalised.

    LFW deep-funnelled photos are 250x250 with the face in the middle; the central 128x128 resized
    to 112 holds the face roughly as the ArcFace template does (not aligned: a sanity input only).
    """
    by_person: dict[str, list[str]] = {}
    for e in lfw_manifest:
        by_person.setdefault(e["identity"], []).append(e["path"])
    crops, labels = [], []
    for person in sorted(p for p, files in by_person.items() if len(files) >= per_identity)[:identities]:
        for path in sorted(by_person[person])[:per_identity]:
            img = Image.open(path).convert("RGB")
            w, h = img.size
            left, top = (w - 128) // 2, (h - 128) // 2
            img = img.crop((left, top, left + 128, top + 128)).resize((112, 112), Image.BILINEAR)
            x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255.0
            crops.append((x - IMAGENET_MEAN) / IMAGENET_STD)
            labels.append(person)
    return torch.stack(crops), labels


def test_mobilefacenet_batch_matches_onnxruntime_on_lfw(mobilefacenet_path, lfw_manifest):
    module = onnx_to_torch(mobilefacenet_path)
    x, labels = lfw_crops(lfw_manifest, identities=4, per_identity=2)  # a batch of 8 real faces
    with torch.no_grad():
        emb = module(x)  # one call; the graph itself is fixed at batch 1
    ref = ort_per_sample(mobilefacenet_path, x.numpy())
    err = max_err(emb, ref)
    print(f"\nMobileFaceNet batch {len(x)} torch vs onnxruntime per sample: max abs error {err:.2e}")
    assert emb.shape == (len(x), 128)
    assert err <= TOL
    with torch.no_grad():  # a batch of 1 runs the graph as exported, without the batch rule
        assert torch.allclose(module(x[:1]), emb[:1], atol=1e-5)

    # Real faces flow through: each person's two photos are closer than any two people's.
    e = torch.nn.functional.normalize(emb, dim=1)
    cos = e @ e.T
    same = torch.tensor([[a == b for b in labels] for a in labels])
    off_diag = ~torch.eye(len(labels), dtype=torch.bool)
    same_cos, diff_cos = cos[same & off_diag], cos[~same]
    print(f"same-person cosine min {same_cos.min():.3f}, different-person max {diff_cos.max():.3f}")
    assert same_cos.min() > diff_cos.max()


def test_mobilefacenet_gradient_reaches_the_face(mobilefacenet_path, lfw_manifest):
    module = onnx_to_torch(mobilefacenet_path)
    x, _ = lfw_crops(lfw_manifest, identities=2, per_identity=2)
    x.requires_grad_(True)
    e = torch.nn.functional.normalize(module(x), dim=1)
    (e[0] * e[1]).sum().backward()  # the cosine that a cloak lowers
    g = x.grad
    assert torch.isfinite(g).all()
    assert g[0].abs().sum() > 0 and g[1].abs().sum() > 0
    assert g[2:].abs().sum() == 0  # samples of the batch stay independent


# --------------------------------------------------------------------------------------------
# A tiny IResNet-shaped graph (insightface ArcFace layout), fixed batch 1: tests/tiny_models.py
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "opset,flatten", [(11, "dynamic"), (13, "dynamic"), (13, "Flatten"), (13, "constant")])
def test_tiny_iresnet_batch_matches_onnxruntime_and_is_differentiable(opset, flatten):
    model = tiny_iresnet(opset, flatten)
    module = onnx_to_torch(model)
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 255.0
    x.requires_grad_(True)
    assert module.op_types()[:3] == ["Sub", "Mul", "Conv"]  # how callers spot in-graph normalisation
    out = module(x)
    err = max_err(out, ort_per_sample(model, x.detach().numpy()))
    print(f"\ntiny IResNet opset {opset} {flatten}: batch 3 vs onnxruntime max abs error {err:.2e}")
    assert out.shape == (3, 10)
    assert out.std(0).mean() > 0.1  # the samples differ: a mixed-up batch could not pass
    assert err <= TOL

    out.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad.flatten(1).abs().sum(1) > 0).all()  # every sample of the batch gets a gradient


def test_external_data_is_read_from_beside_the_model(tmp_path):
    # Large ONNX models (R100 is 250 MB) keep their weights in a side file: load it from the path.
    model = tiny_iresnet(13, "Flatten")
    path = tmp_path / "tiny.onnx"
    saved = onnx.ModelProto()
    saved.CopyFrom(model)  # saving with external data empties the tensors of the proto it is given
    onnx.save_model(saved, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="tiny.onnx.data", size_threshold=0)
    assert (tmp_path / "tiny.onnx.data").is_file()
    x = torch.rand(2, 3, 8, 8) * 255.0
    with torch.no_grad():
        expected, got = onnx_to_torch(model)(x), onnx_to_torch(path)(x)
    assert torch.equal(expected, got)
    # A ModelProto whose side file was not read cannot be converted: say so, do not run on garbage.
    with pytest.raises(ValueError, match="external"):
        onnx_to_torch(onnx.load(str(path), load_external_data=False))


def test_tiny_iresnet_gradcheck():
    module = onnx_to_torch(tiny_iresnet(13, "dynamic")).double()
    x = (torch.rand(2, 3, 8, 8, dtype=torch.float64) * 255.0).requires_grad_(True)
    assert torch.autograd.gradcheck(module, (x,), fast_mode=True)


def test_converter_runs_without_torchvision(tmp_path):
    """Why faceprot keeps its own converter rather than PyPI onnx2torch (1.5.15, the latest): onnx2torch
    imports torchvision, and the only torchvision built for torch 2.13.0 (0.28.0) does not import
    beside the pinned CPU torch ("operator torchvision::nms does not exist", checked here). Measured
    with torchvision stubbed out, onnx2torch also breaks the batch rule: MobileFaceNet on a batch of
    4 gives one (1, 512) row (its fixed Reshape [1, -1]), the tiny IResNet at opset 11 does not
    convert (1-D BatchNorm) and its constant-Reshape variant fails on a batch of 3. faceprot's
    converter needs none of torchvision: here it converts and runs with torchvision unimportable."""
    import subprocess
    import sys

    model_path = tmp_path / "tiny.onnx"
    onnx.save(tiny_iresnet(13, "constant"), str(model_path))
    code = (
        "import sys; sys.modules['torchvision'] = None\n"  # any `import torchvision` now fails
        "import torch\n"
        "from faceprot.recognizers.onnx_torch import onnx_to_torch\n"
        f"out = onnx_to_torch({str(model_path)!r})(torch.rand(3, 3, 8, 8) * 255)\n"
        "assert out.shape == (3, 10), out.shape\n"
        "assert 'torchvision' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


# --------------------------------------------------------------------------------------------
# Single operators with the attributes that are easy to get wrong
# --------------------------------------------------------------------------------------------


def single_op(op: str, shape: list[int], opset: int = 13, inputs: tuple = (), out_rank: int | None = None,
              **attrs) -> onnx.ModelProto:
    """One node reading input ``x`` of fixed ``shape`` (batch 1); ``inputs`` are the node's other
    inputs: an array becomes an initializer, ``""`` an absent optional input."""
    names, inits = ["x"], []
    for i, v in enumerate(inputs):
        if isinstance(v, str):
            names.append(v)
        else:
            names.append(f"in{i}")
            inits.append(numpy_helper.from_array(np.asarray(v), f"in{i}"))
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"], **attrs)], op,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


f32 = np.float32
i64 = np.int64
rng = np.random.default_rng(0)
W_GROUPED = rng.standard_normal((6, 2, 3, 3)).astype(f32)
W_SAME = rng.standard_normal((4, 3, 3, 3)).astype(f32)

OP_CASES = {
    "conv_groups_dilation_asym_pads": single_op(
        "Conv", [1, 4, 9, 9], inputs=(W_GROUPED, f32(rng.standard_normal(6))), group=2,
        strides=[2, 1], dilations=[1, 2], pads=[1, 0, 2, 1]),
    "conv_auto_pad_same_upper": single_op(
        "Conv", [1, 3, 8, 8], inputs=(W_SAME,), strides=[2, 2], auto_pad="SAME_UPPER"),
    "gemm_alpha_beta_transB": single_op(
        "Gemm", [1, 5], inputs=(rng.standard_normal((4, 5)).astype(f32), f32(rng.standard_normal(4))),
        alpha=0.5, beta=2.0, transB=1),
    "gemm_transA": single_op("Gemm", [1, 4], inputs=(rng.standard_normal((1, 2)).astype(f32),), transA=1),
    "clip_attributes_opset10": single_op("Clip", [1, 3, 4, 4], opset=10, min=-0.5, max=0.25),
    "clip_min_input_only": single_op("Clip", [1, 3, 4, 4], inputs=(f32(-0.3),)),
    "clip_max_input_only": single_op("Clip", [1, 3, 4, 4], inputs=("", f32(0.2))),
    "pad_constant_crop": single_op(
        "Pad", [1, 2, 5, 5], inputs=(np.array([0, 0, 1, -1, 0, 0, 2, 3], i64), f32(1.5)), mode="constant"),
    "pad_reflect": single_op("Pad", [1, 2, 5, 5], inputs=(np.array([0, 0, 2, 1, 0, 0, 1, 3], i64),),
                             mode="reflect"),
    "pad_edge": single_op("Pad", [1, 2, 5, 5], inputs=(np.array([0, 0, 2, 1, 0, 0, 1, 3], i64),),
                          mode="edge"),
    "pad_wrap_axes": single_op("Pad", [1, 2, 5, 5], opset=19,
                               inputs=(np.array([2, 1, 1, 3], i64), "", np.array([2, 3], i64)), mode="wrap"),
    "pad_opset10_attributes": single_op("Pad", [1, 2, 5, 5], opset=10, pads=[0, 0, 1, 2, 0, 0, 2, 1],
                                       mode="reflect"),
    "avgpool_count_pad": single_op("AveragePool", [1, 2, 7, 7], kernel_shape=[3, 3], strides=[2, 2],
                                   pads=[1, 1, 1, 1], count_include_pad=1),
    "avgpool_exclude_pad": single_op("AveragePool", [1, 2, 7, 7], kernel_shape=[3, 3], strides=[2, 2],
                                     pads=[1, 1, 1, 1]),
    "avgpool_asym_pads": single_op("AveragePool", [1, 2, 7, 7], kernel_shape=[3, 2], pads=[0, 1, 2, 0]),
    "maxpool_ceil": single_op("MaxPool", [1, 2, 8, 8], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    "maxpool_asym_pads": single_op("MaxPool", [1, 2, 7, 7], kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
    "global_average_pool": single_op("GlobalAveragePool", [1, 3, 5, 4]),
    "slice_negative_step": single_op(
        "Slice", [1, 4, 6, 6], inputs=(np.array([-1, 5], i64), np.array([-100, 0], i64),
                                       np.array([2, 3], i64), np.array([-2, -1], i64))),
    "slice_opset9_attributes": single_op("Slice", [1, 4, 6, 6], opset=9, starts=[1, -4], ends=[3, 1000],
                                         axes=[1, 3]),
    "softmax_opset11_coerced": single_op("Softmax", [1, 3, 4], opset=11, axis=1),
    "softmax_opset13_axis": single_op("Softmax", [1, 3, 4], axis=1),
    "reduce_l2_attr_axes": single_op("ReduceL2", [1, 3, 4, 5], axes=[1], keepdims=0),
    "reduce_mean_input_axes": single_op("ReduceMean", [1, 3, 4, 5], opset=18,
                                        inputs=(np.array([-1, 2], i64),)),
    "leaky_relu": single_op("LeakyRelu", [1, 3, 4], alpha=0.2),
    "sigmoid": single_op("Sigmoid", [1, 3, 4]),
    "pow": single_op("Pow", [1, 3, 4], inputs=(f32(2.0),)),
    "div": single_op("Div", [1, 3, 4], inputs=(f32(rng.uniform(1, 2, 4)),)),
    "transpose": single_op("Transpose", [1, 2, 3, 4], perm=[0, 3, 1, 2]),
    "matmul": single_op("MatMul", [1, 3, 4], inputs=(rng.standard_normal((4, 2)).astype(f32),)),
    "squeeze_opset11": single_op("Squeeze", [1, 3, 1, 4], opset=11, axes=[2]),
    "unsqueeze_input_axes": single_op("Unsqueeze", [1, 3, 4], inputs=(np.array([-1, 1], i64),)),
}


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_single_op_batched_matches_onnxruntime(case):
    model = OP_CASES[case]
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = torch.randn(2, *shape[1:], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = onnx_to_torch(model)(x)
    assert max_err(out, ort_per_sample(model, x.numpy())) <= 1e-5


def test_unsupported_op_names_op_and_model(tmp_path):
    node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=4)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros((1, 16, 3), f32), "w"),
         numpy_helper.from_array(np.zeros((1, 16, 4), f32), "r")])
    path = tmp_path / "odd_recognizer.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(NotImplementedError, match=r"odd_recognizer\.onnx.*LSTM"):
        onnx_to_torch(path)
