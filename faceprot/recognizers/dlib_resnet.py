"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a PyTorch module.

dlib's C++ network gives the 128-D descriptors that dlib-based face recognition compares (same person
when the L2 distance is below 0.6), but it cannot be differentiated. :class:`DlibResNet` rebuilds it
from the weights in dlib's own file, so that a cloak can be optimised against the very descriptors
dlib computes. It matches ``dlib.face_recognition_model_v1.compute_face_descriptor`` to float32
rounding (see ``tests/test_dlib_resnet.py``).

The network (dlib's ``dnn_face_recognition_ex.cpp``, input to output)::

    150x150 RGB -> (x - mean) / 256 -> conv 7x7/2 (32) -> affine -> relu -> max pool 3x3/2
    -> 3 x res(32) -> res_down(64) + 3 x res(64) -> res_down(128) + 2 x res(128)
    -> res_down(256) + 2 x res(256) -> res_down(256) -> global average pool -> fc 256->128 (no bias)

where ``res(N)`` is ``relu(affine(conv3x3(relu(affine(conv3x3(x))))) + x)`` and ``res_down(N)`` is the
same with a stride-2 first conv and a 2x2/2 average-pooled shortcut.

The file is a dlib serialisation (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``dlib/dnn/layers.h``):

- an integer is one header byte (low 4 bits: how many little-endian bytes follow; bit 0x80: negative);
- a string is an integer length and the bytes; a bool is one ASCII byte ``'0'`` or ``'1'``;
- a double is two integers, mantissa and base-2 exponent;
- a tensor is an integer version (2), four integer dims (n, k, nr, nc) and n*k*nr*nc little-endian
  float32.

Each dlib layer wrapper writes its version and then its subnetwork *before* its own layer record. So
the file holds the loss record, then the version integers of every layer from the output down to the
input, then the input layer, and then the layer records from the input up to the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MODEL_KEY = "dlib"
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"

CHIP_SIZE = 150  # dlib.get_face_chip(img, shape, size=150, padding=0.25)
DESCRIPTOR_DIM = 128
# dlib's input_rgb_image_sized mean, used until a file supplies its own (the file stores the same).
DEFAULT_MEAN_RGB = (122.782, 117.001, 104.298)

# Residual units input to output: (channels, downsampling), from dnn_face_recognition_ex.cpp.
_UNITS: tuple[tuple[int, bool], ...] = (
    ((32, False),) * 3
    + ((64, True),) + ((64, False),) * 3
    + ((128, True),) + ((128, False),) * 2
    + ((256, True),) + ((256, False),) * 2
    + ((256, True),)
)
_STEM_CHANNELS = 32


# ---------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------


class Affine(nn.Module):
    """dlib's ``affine_`` layer in conv mode: ``gamma * x + beta`` per channel (a frozen batch norm).

    Args:
        channels: C.

    Shape:
        x: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[:, None, None] + self.beta[:, None, None]


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev_``: the sum of two (B, C, H, W) tensors whose C, H and W may differ.

    The result has the larger size on each axis; the smaller tensor counts as zero beyond its end
    (dlib's ``tt::add``). In this network that pads the shortcut's channels in every downsampling
    unit, and also the spatial size where a 3x3/2 conv gives 3x3 but the 2x2/2 pool gives 4x4.
    """
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class ResidualUnit(nn.Module):
    """One residual unit: ``relu(affine(conv(relu(affine(conv(x))))) + shortcut(x))``.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        downsample: first conv has stride 2 and the shortcut is a 2x2/2 average pool.
        paddings: (pad_y, pad_x) of the two convs, as stored in dlib's file.

    Shape:
        x: (B, C_in, H, W) -> (B, C_out, H', W'), H' = H without downsampling, else
        max((H - 3 + 2 pad_y) // 2 + 1, H // 2).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        downsample: bool,
        paddings: Sequence[tuple[int, int]] = ((1, 1), (1, 1)),
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 2 if downsample else 1, tuple(paddings[0]))
        self.affine1 = Affine(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, tuple(paddings[1]))
        self.affine2 = Affine(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(add_zero_padded(y, shortcut))


def _default_paddings() -> list[tuple[int, int]]:
    """dlib's ``con_`` default: pad k // 2 when the stride is 1, else no padding."""
    pads = [(0, 0)]  # stem 7x7/2
    for _, down in _UNITS:
        pads += [(0, 0) if down else (1, 1), (1, 1)]
    return pads


class DlibResNet(nn.Module):
    """dlib's face recognition ResNet: a 150x150 face chip to dlib's raw 128-D descriptor.

    Differentiable with respect to the input. Build it with :meth:`from_dat` or
    :func:`load_dlib_resnet`; ``DlibResNet()`` alone has the architecture with untrained weights.

    Args:
        conv_paddings: (pad_y, pad_x) of each of the 29 convs, input to output; dlib's defaults
            when None.

    Shape:
        x: (B, 3, 150, 150) float RGB in [0, 255], a chip from
        ``dlib.get_face_chip(img, shape, size=150, padding=0.25)`` as (C, H, W).
        Returns (B, 128) raw descriptors, as dlib's ``compute_face_descriptor`` gives them (not
        normalised: norms are about 1.3 to 1.4 on real faces). Same person when the L2 distance
        is < 0.6.

    Example:
        >>> model = load_dlib_resnet()
        >>> model(torch.full((2, 3, 150, 150), 128.0)).shape
        torch.Size([2, 128])
    """

    def __init__(self, conv_paddings: Sequence[tuple[int, int]] | None = None) -> None:
        super().__init__()
        pads = list(conv_paddings) if conv_paddings is not None else _default_paddings()
        if len(pads) != 1 + 2 * len(_UNITS):
            raise ValueError(f"DlibResNet has {1 + 2 * len(_UNITS)} convs, got {len(pads)} paddings")
        self.register_buffer("mean_rgb", torch.tensor(DEFAULT_MEAN_RGB).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, _STEM_CHANNELS, 7, 2, tuple(pads[0]))
        self.affine = Affine(_STEM_CHANNELS)
        units, c_in = [], _STEM_CHANNELS
        for i, (c, down) in enumerate(_UNITS):
            units.append(ResidualUnit(c_in, c, down, pads[1 + 2 * i: 3 + 2 * i]))
            c_in = c
        self.units = nn.ModuleList(units)
        self.fc = nn.Linear(c_in, DESCRIPTOR_DIM, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"DlibResNet expects (B, 3, 150, 150) RGB chips, got {tuple(x.shape)}")
        # dlib's input_rgb_image_sized: (pixel - mean) / 256, not / std.
        x = (x - self.mean_rgb) / 256.0
        x = F.max_pool2d(F.relu(self.affine(self.conv(x))), 3, 2)
        for unit in self.units:
            x = unit(x)
        return self.fc(x.mean(dim=(2, 3)))

    @classmethod
    def from_dat(cls, path: str | Path) -> "DlibResNet":
        """Read dlib's ``.dat`` file; eval mode, parameters frozen (gradients flow to inputs only).

        Raises ValueError when the file is not this network, or is truncated.
        """
        dat = read_dlib_resnet(path)
        model = cls(conv_paddings=[layer.padding for layer in dat.layers if layer.kind == "con"])
        with torch.no_grad():
            model.mean_rgb.copy_(torch.tensor(dat.mean_rgb).view(1, 3, 1, 1))
            targets = [m for m in model.modules() if isinstance(m, (nn.Conv2d, Affine, nn.Linear))]
            for module, layer in zip(targets, dat.layers, strict=True):
                for param, array in zip(module.parameters(), layer.arrays, strict=True):
                    param.copy_(torch.from_numpy(array))
        model.eval()
        model.requires_grad_(False)
        return model


def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """:class:`DlibResNet` from ``path``; by default the registry's file
    (``resolve("dlib", "dlib_face_recognition_resnet_model_v1.dat")``). Eval mode, frozen."""
    if path is None:
        from ..registry import resolve

        path = resolve(MODEL_KEY, MODEL_FILE)
    return DlibResNet.from_dat(path)


# ---------------------------------------------------------------------------------------------
# The file reader
# ---------------------------------------------------------------------------------------------


@dataclass
class DlibLayer:
    """One layer with parameters, as stored in dlib's file.

    kind: "con" (arrays: weight (O, I, kh, kw), bias (O,)), "affine" (gamma (C,), beta (C,)) or
    "fc" (weight (128, 256), as ``nn.Linear`` holds it). padding: (pad_y, pad_x) of a "con".
    """

    kind: str
    arrays: tuple[np.ndarray, ...]
    padding: tuple[int, int] = (0, 0)


@dataclass
class DlibResNetFile:
    """What :func:`read_dlib_resnet` finds: the input mean, the 59 parameter layers input to output,
    and the metric loss settings dlib trained with (margin 0.04, distance threshold 0.6)."""

    mean_rgb: tuple[float, float, float]
    layers: list[DlibLayer]
    margin: float
    distance_threshold: float


class _Spec(NamedTuple):
    """One layer the file must hold, input to output. ``args`` depend on ``kind``:
    con (filters, in_channels, kernel, stride), affine (channels,), max_pool/avg_pool
    (window_y, window_x, stride_y, stride_x; window 0 = the whole input), fc (outputs, inputs)."""

    kind: str
    args: tuple[int, ...] = ()


def _layer_specs() -> list[_Spec]:
    specs = [_Spec("con", (_STEM_CHANNELS, 3, 7, 2)), _Spec("affine", (_STEM_CHANNELS,)), _Spec("relu"),
             _Spec("max_pool", (3, 3, 2, 2))]
    c_in = _STEM_CHANNELS
    for c, down in _UNITS:
        specs += [_Spec("tag"), _Spec("con", (c, c_in, 3, 2 if down else 1)), _Spec("affine", (c,)),
                  _Spec("relu"), _Spec("con", (c, c, 3, 1)), _Spec("affine", (c,))]
        if down:  # add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<tag1<...>>>>>>
            specs += [_Spec("tag"), _Spec("skip"), _Spec("avg_pool", (2, 2, 2, 2))]
        specs += [_Spec("add_prev"), _Spec("relu")]
        c_in = c
    specs += [_Spec("avg_pool", (0, 0, 1, 1)), _Spec("fc", (DESCRIPTOR_DIM, c_in))]
    return specs


class _Reader:
    """Bounds-checked reads of dlib's serialisation primitives from a bytes buffer."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def fail(self, why: str) -> ValueError:
        return ValueError(
            f"{self.where} is not a dlib face recognition ResNet ({MODEL_FILE}), or it is truncated "
            f"or damaged: {why} (at byte {self.pos} of {len(self.data)})."
        )

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"the file ends early (truncated), {n} more bytes were expected")
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def integer(self) -> int:
        head = self.take(1)[0]
        size = head & 0x0F
        if head & 0x70 or size > 8:
            raise self.fail(f"byte 0x{head:02x} is not a dlib integer header")
        value = int.from_bytes(self.take(size), "little")
        return -value if head & 0x80 else value

    def expect_int(self, what: str, allowed: Sequence[int]) -> int:
        value = self.integer()
        if value not in allowed:
            raise self.fail(f"{what} is {value}, expected {' or '.join(map(str, allowed))}")
        return value

    def string(self, max_len: int = 64) -> str:
        n = self.integer()
        if not 0 <= n <= max_len:
            raise self.fail(f"a string of length {n} where a short layer name was expected")
        raw = self.take(n)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"{raw[:16]!r} is not a layer name") from None

    def expect_string(self, allowed: Sequence[str]) -> str:
        s = self.string()
        if s not in allowed:
            raise self.fail(f"found {s!r} where {' or '.join(map(repr, allowed))} was expected")
        return s

    def boolean(self) -> bool:
        b = self.take(1)
        if b not in (b"0", b"1"):
            raise self.fail(f"byte {b!r} is not a dlib bool")
        return b == b"1"

    def double(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError:  # dlib writes inf/nan as special exponents; no value here needs them
            return math.inf

    def dims(self, what: str, expected: tuple[int, ...]) -> None:
        got = tuple(self.integer() for _ in range(4))
        if got != expected:
            raise self.fail(f"{what} has shape {got}, expected {expected}")

    def tensor(self, what: str, expected: tuple[int, int, int, int]) -> np.ndarray:
        """A dlib tensor whose size must equal that of ``expected`` (dlib keeps params flat)."""
        self.expect_int(f"the version of {what}", (2,))
        got = tuple(self.integer() for _ in range(4))
        if any(d < 0 for d in got) or math.prod(got) != math.prod(expected):
            raise self.fail(f"{what} has shape {got}, expected {math.prod(expected)} values")
        raw = self.take(4 * math.prod(expected))
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)

    def skip_tensor(self, what: str) -> None:
        self.expect_int(f"the version of {what}", (2,))
        dims = [self.integer() for _ in range(4)]
        if any(d < 0 for d in dims):
            raise self.fail(f"{what} has shape {tuple(dims)}")
        self.take(4 * math.prod(dims))

    def alias(self, what: str, expected: tuple[int, int, int, int]) -> None:
        """dlib's alias_tensor: version 1 and the dims of a view into the params tensor."""
        self.expect_int(f"the version of {what}", (1,))
        self.dims(what, expected)


def _read_layer(r: _Reader, spec: _Spec) -> DlibLayer | None:
    """One layer record (the ``details`` of dlib's add_layer); returns the parameters, if any."""
    if spec.kind == "con":
        out_ch, in_ch, k, stride = spec.args
        version = r.expect_string(("con_4", "con_5", "con_6"))
        n_w = out_ch * in_ch * k * k
        params = r.tensor("conv parameters", (n_w + out_ch, 1, 1, 1))
        r.expect_int("the number of conv filters", (out_ch,))
        r.expect_int("the conv kernel height", (k,))
        r.expect_int("the conv kernel width", (k,))
        r.expect_int("the conv stride y", (stride,))
        r.expect_int("the conv stride x", (stride,))
        # The padding is stored, not implied: keep what the file says (dlib's default is k//2 for
        # stride 1 and 0 otherwise), within what a conv allows.
        pad = (r.integer(), r.integer())
        if not all(0 <= p < k for p in pad):
            raise r.fail(f"conv padding {pad} is not in [0, {k})")
        r.alias("the conv filters", (out_ch, in_ch, k, k))
        r.alias("the conv biases", (1, out_ch, 1, 1))
        for _ in range(4):  # learning-rate and weight-decay multipliers: training only
            r.double()
        if version in ("con_5", "con_6") and not r.boolean():
            raise r.fail("a conv without bias")
        if version == "con_6" and r.boolean():
            raise r.fail("a conv with a fused relu")
        weight = params[:n_w].reshape(out_ch, in_ch, k, k)  # dlib's filters are (O, I, kh, kw) too
        return DlibLayer("con", (weight, params[n_w:].copy()), pad)
    if spec.kind == "affine":
        (c,) = spec.args
        version = r.expect_string(("affine_", "affine_2"))
        params = r.tensor("affine parameters", (2 * c, 1, 1, 1))
        r.alias("the affine gamma", (1, c, 1, 1))
        r.alias("the affine beta", (1, c, 1, 1))
        r.expect_int("the affine mode", (0,))  # 0 = CONV_MODE: one gamma and beta per channel
        gamma, beta = params[:c].copy(), params[c:].copy()
        if version == "affine_2" and r.boolean():  # a disabled affine passes its input through
            gamma, beta = np.ones_like(gamma), np.zeros_like(beta)
        return DlibLayer("affine", (gamma, beta))
    if spec.kind == "fc":
        n_out, n_in = spec.args
        version = r.expect_string(("fc_2", "fc_3"))
        r.expect_int("the fc output count", (n_out,))
        r.expect_int("the fc input count", (n_in,))
        params = r.tensor("fc parameters", (n_in, n_out, 1, 1))
        r.alias("the fc weights", (n_in, n_out, 1, 1))
        r.alias("the fc biases", (0, 0, 0, 0))
        r.expect_int("the fc bias mode", (1,))  # 1 = FC_NO_BIAS
        for _ in range(4):
            r.double()
        if version == "fc_3" and r.boolean():
            raise r.fail("an fc with bias")
        # dlib computes x @ W with W (inputs, outputs); nn.Linear holds W transposed.
        return DlibLayer("fc", (params.reshape(n_in, n_out).T.copy(),))
    if spec.kind in ("max_pool", "avg_pool"):
        r.expect_string((f"{spec.kind}_2",))
        window_stride = tuple(r.integer() for _ in range(4))
        pad = (r.integer(), r.integer())
        if window_stride != spec.args or pad != (0, 0):
            raise r.fail(f"{spec.kind} {window_stride} padding {pad}, expected {spec.args} padding (0, 0)")
        return None
    r.expect_string(({"relu": "relu_", "add_prev": "add_prev_"}[spec.kind],))
    return None


def read_dlib_resnet(path: str | Path) -> DlibResNetFile:
    """Parse dlib's ``dlib_face_recognition_resnet_model_v1.dat`` and check it against the known
    architecture: layer count and order, every tensor shape, strides, pool sizes.

    Raises ValueError, naming the file and the byte where reading failed, when it is a different
    network, not a dlib file at all, or truncated.
    """
    path = Path(path)
    r = _Reader(path.read_bytes(), str(path))

    # add_loss_layer: version, then loss_metric_ with its margin and distance threshold.
    r.expect_int("the loss layer version", (1,))
    r.expect_string(("loss_metric_2",))
    margin, threshold = r.double(), r.double()

    # Every wrapper's version, output to input: add_tag_layer and add_skip_layer write 1,
    # add_layer writes 2, and the innermost add_layer (the one holding the input) 2 or 3.
    specs = _layer_specs()
    for i, spec in enumerate(reversed(specs)):
        if i == len(specs) - 1:
            inner_version = r.expect_int("the innermost layer version", (2, 3))
        else:
            r.expect_int(f"the version of layer {len(specs) - i} ({spec.kind})",
                         (1,) if spec.kind in ("tag", "skip") else (2,))

    r.expect_string(("input_rgb_image_sized",))
    mean_rgb = tuple(r.double() for _ in range(3))
    if not all(0.0 <= m <= 255.0 for m in mean_rgb):
        raise r.fail(f"input mean {mean_rgb} is not an RGB mean")
    r.expect_int("the input height", (CHIP_SIZE,))
    r.expect_int("the input width", (CHIP_SIZE,))

    # Layer records, input to output. Tags and skips hold no record. After each record, add_layer
    # writes three bools and three (empty) gradient/output tensors, and at version 3 an integer.
    layers: list[DlibLayer] = []
    first = True
    for spec in specs:
        if spec.kind in ("tag", "skip"):
            continue
        layer = _read_layer(r, spec)
        if layer is not None:
            layers.append(layer)
        for _ in range(3):
            r.boolean()
        for what in ("x_grad", "cached_output", "params_grad"):  # empty in dlib's file
            r.skip_tensor(what)
        if first and inner_version == 3:
            r.integer()  # sample expansion factor
        first = False
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} bytes are left after the last layer")
    return DlibResNetFile(
        mean_rgb=tuple(np.float32(m).item() for m in mean_rgb),  # dlib holds them as float
        layers=layers, margin=margin, distance_threshold=threshold,
    )


__all__ = [
    "Affine",
    "DlibLayer",
    "DlibResNet",
    "DlibResNetFile",
    "ResidualUnit",
    "add_zero_padded",
    "load_dlib_resnet",
    "read_dlib_resnet",
]
