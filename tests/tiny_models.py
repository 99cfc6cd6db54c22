"""Tiny models built in the formats of real ones, for the loading paths that cannot run offline,
and a tiny fixed recognizer for tests about an optimiser rather than a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_iresnet(opset: int = 13, flatten: str = "dynamic", seed: int = 0, size: int = 8) -> onnx.ModelProto:
    """input (1, 3, size, size) in [0, 255] -> (1, 10) embedding, with insightface R100's node pattern.

    (x - 127.5) * 1/128, Conv+BN+PRelu, one IBasicBlock (BN, conv, BN, PRelu, stride-2 conv, BN,
    plus a stride-2 1x1 conv+BN shortcut), BN, Dropout, flatten (ONNX Flatten, the dynamic
    Shape/Gather/Unsqueeze/Concat/Reshape chain of older exports, or a Reshape to a constant
    [1, -1]), Gemm, 1-D feature BN.
    """
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(name: str, *shape: int, scale: float = 0.3) -> str:
        return const(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def bn(x: str, c: int, name: str) -> str:
        # Trained-network-like statistics (gamma near 1), so that the samples stay distinguishable.
        ins = [x, const(f"{name}.g", rng.uniform(0.8, 1.5, c).astype(np.float32)),
               weight(f"{name}.b", c, scale=0.1), weight(f"{name}.m", c, scale=0.1),
               const(f"{name}.v", rng.uniform(0.5, 2.0, c).astype(np.float32))]
        nodes.append(helper.make_node("BatchNormalization", ins, [name], epsilon=2e-5, momentum=0.9))
        return name

    def conv(x: str, cin: int, cout: int, k: int, stride: int, name: str) -> str:
        nodes.append(helper.make_node(
            "Conv", [x, weight(f"{name}.w", cout, cin, k, k)], [name], kernel_shape=[k, k],
            strides=[stride, stride], pads=[k // 2] * 4, dilations=[1, 1], group=1))
        return name

    def prelu(x: str, c: int, name: str) -> str:
        slope = const(f"{name}.slope", rng.uniform(0.1, 0.4, (c, 1, 1)).astype(np.float32))
        nodes.append(helper.make_node("PRelu", [x, slope], [name]))
        return name

    nodes.append(helper.make_node("Sub", ["data", const("mean", np.float32(127.5))], ["sub"]))
    nodes.append(helper.make_node("Mul", ["sub", const("scale", np.float32(0.0078125))], ["norm"]))
    x = prelu(bn(conv("norm", 3, 8, 3, 1, "conv0"), 8, "bn0"), 8, "prelu0")
    y = bn(x, 8, "blk.bn1")
    y = prelu(bn(conv(y, 8, 16, 3, 1, "blk.conv1"), 16, "blk.bn2"), 16, "blk.prelu")
    y = bn(conv(y, 16, 16, 3, 2, "blk.conv2"), 16, "blk.bn3")
    short = bn(conv(x, 8, 16, 1, 2, "blk.down"), 16, "blk.down.bn")
    nodes.append(helper.make_node("Add", [y, short], ["blk.out"]))
    z = bn("blk.out", 16, "bn_out")
    nodes.append(helper.make_node("Dropout", [z], ["drop"]))
    if flatten == "Flatten":
        nodes.append(helper.make_node("Flatten", ["drop"], ["flat"], axis=1))
    elif flatten == "constant":  # the export batch baked into the target, as in MobileFaceNet
        nodes.append(helper.make_node("Reshape", ["drop", const("target", np.array([1, -1]))], ["flat"]))
    else:
        nodes.append(helper.make_node("Shape", ["drop"], ["shape"]))
        nodes.append(helper.make_node("Gather", ["shape", const("zero", np.int64(0))], ["n"], axis=0))
        if opset >= 13:
            nodes.append(helper.make_node("Unsqueeze", ["n", const("axes0", np.array([0]))], ["n1"]))
        else:
            nodes.append(helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]))
        nodes.append(helper.make_node("Concat", ["n1", const("minus1", np.array([-1]))], ["target"], axis=0))
        nodes.append(helper.make_node("Reshape", ["drop", "target"], ["flat"]))
    nodes.append(helper.make_node(
        "Gemm", ["flat", weight("fc.w", 10, 16 * (size // 2) ** 2, scale=0.05 * 4 / (size // 2)), weight("fc.b", 10)], ["fc"],
        alpha=1.0, beta=1.0, transB=1))
    bn("fc", 10, "features")  # insightface's BatchNorm1d on the embedding

    graph = helper.make_graph(
        nodes, "tiny_iresnet",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def tiny_landmark_3d68(seed: int = 0) -> onnx.ModelProto:
    """input ``data`` (N, 3, 192, 192) raw RGB in [0, 255] -> ``fc1`` (N, 3309), in the layout of
    InsightFace's 1k3d68.onnx (an MXNet export with a symbolic batch named "None").

    A ``bn_data`` batch-norm normalises the raw pixels (so InsightFace's rule says: mean 0, std 1),
    then Conv+BN+PRelu, a max pool, one residual unit (Conv, BN, Relu, Conv, BN plus a strided 1x1
    Conv+BN shortcut, Add, Relu), a strided Conv, Flatten and the Gemm to 1103 x 3 numbers. The
    weights are scaled so that the points spread over the crop, as a trained model's do.
    """
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def bn(x: str, c: int, name: str, mean=None, var=None) -> str:
        ins = [x, const(f"{name}_gamma", rng.uniform(0.8, 1.2, c)), const(f"{name}_beta", rng.normal(0, 0.1, c)),
               const(f"{name}_moving_mean", rng.normal(0, 0.1, c) if mean is None else mean),
               const(f"{name}_moving_var", rng.uniform(0.5, 2.0, c) if var is None else var)]
        nodes.append(helper.make_node("BatchNormalization", ins, [name], name=name, epsilon=2e-5, momentum=0.9))
        return name

    def conv(x: str, cin: int, cout: int, k: int, stride: int, name: str) -> str:
        w = const(f"{name}_weight", rng.normal(0, (2 / (cin * k * k)) ** 0.5, (cout, cin, k, k)))
        nodes.append(helper.make_node("Conv", [x, w], [name], name=name, kernel_shape=[k, k], strides=[stride, stride],
                                      pads=[k // 2] * 4 if k > 1 else [0] * 4))
        return name

    def op(kind: str, ins: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(kind, ins, [name], name=name, **attrs))
        return name

    x = bn("data", 3, "bn_data", mean=np.full(3, 127.5), var=np.full(3, 128.0**2))
    slope = const("relu0_gamma", np.full((8, 1, 1), 0.25))
    x = op("PRelu", [bn(conv(x, 3, 8, 3, 2, "conv0"), 8, "bn0"), slope], "relu0")
    x = op("MaxPool", [x], "pool0", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # 48 x 48
    y = op("Relu", [bn(conv(x, 8, 16, 3, 2, "unit1_conv1"), 16, "unit1_bn1")], "unit1_relu1")
    y = bn(conv(y, 16, 16, 3, 1, "unit1_conv2"), 16, "unit1_bn2")
    short = bn(conv(x, 8, 16, 1, 2, "unit1_sc"), 16, "unit1_sc_bn")
    x = op("Relu", [op("Add", [y, short], "unit1_plus")], "unit1_relu")  # 24 x 24
    x = conv(x, 16, 4, 3, 4, "conv_last")  # 6 x 6
    x = op("Flatten", [x], "flatten0", axis=1)
    w = const("fc1_weight", rng.normal(0, 0.2 / 144**0.5, (3309, 144)))
    op("Gemm", [x, w, const("fc1_bias", rng.uniform(-0.6, 0.6, 3309))], "fc1", alpha=1.0, beta=1.0, transB=1)

    graph = helper.make_graph(
        nodes, "tiny_1k3d68",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, 192, 192])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["None", 3309])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=7)
    onnx.checker.check_model(model)
    return model


#: google/ddpm-ema-celebahq-256's config.json (the google/ddpm-*-256 conversions share it; the
#: channels are FACTS.md section 5's).
REAL_CONFIG = dict(
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    act_fn="silu", attention_head_dim=None, center_input_sample=False, downsample_padding=0,
    flip_sin_to_cos=False, freq_shift=1, mid_block_scale_factor=1, norm_eps=1e-6, norm_num_groups=32,
    time_embedding_type="positional",
)
TINY_CONFIG = dict(REAL_CONFIG, block_out_channels=(8, 8, 16, 16, 32, 32), norm_num_groups=4)


def tiny_unet(seed: int = 0):
    """The real architecture with tiny channels; conv_out re-drawn so the noise it predicts is of
    order 0.1 (a random init's last layer is near zero, which would hide a wrong step)."""
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(**TINY_CONFIG)
    with torch.no_grad():
        unet.conv_out.weight.normal_(0, 0.05)
        unet.conv_out.bias.normal_(0, 0.05)
    return unet


def write_tiny_diffusion_weights(root: Path) -> Path:
    """The diffusion engine's own models, tiny, in their Hub file layouts under ``root`` (a
    ``$FACEPROT_MODEL_DIR``): ``ddpm-celebahq/`` (:func:`tiny_unet`, diffusers' ``save_pretrained``)
    and ``landmarks-3d68/models/antelopev2/1k3d68.onnx`` (:func:`tiny_landmark_3d68`). Returns root."""
    from faceprot.disguise.landmarks3d import FILENAME

    tiny_unet().save_pretrained(root / "ddpm-celebahq")
    onnx_path = root / "landmarks-3d68" / FILENAME
    onnx_path.parent.mkdir(parents=True)
    onnx_path.write_bytes(tiny_landmark_3d68().SerializeToString())
    return root


def tiny_conv_recognizer():
    """A fixed random recognizer of torch modules (one conv, one linear) on canonical (B, 3, 256,
    256) faces, cosine, with the attributes the cloak's optimiser reads from a surrogate."""
    import torch

    from faceprot.recognizers.base import Threshold

    class TinyNet(torch.nn.Module):
        name, metric, threshold = "tiny", "cosine", Threshold(0.3, "test")

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 8, 5, stride=4, padding=2)
            self.fc = torch.nn.Linear(8 * 16 * 16, 16)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(torch.nn.functional.avg_pool2d(x, 4))).flatten(1))

    return TinyNet()
