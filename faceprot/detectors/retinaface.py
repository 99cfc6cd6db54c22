"""RetinaFace (mobilenet0.25) face detector with five points, in PyTorch.

The network is the biubug6/Pytorch_Retinaface design (Deng et al., "RetinaFace", CVPR 2020), written
here so that its module names load that repo's ``mobilenet0.25_Final.pth`` state dict unchanged:

    body  MobileNetV1 x0.25: stage1 (stride 8, 64 ch), stage2 (stride 16, 128), stage3 (stride 32, 256)
    fpn   1x1 lateral convs to 64 channels, nearest upsampling, 3x3 merge convs
    ssh1..3  SSH context modules (3x3 | 5x5 | 7x7 branches as stacked 3x3 convs, 32+16+16 channels)
    ClassHead / BboxHead / LandmarkHead  one 1x1 conv per level, 2 anchors per location

Anchors are squares of side 16, 32 (stride 8), 64, 128 (stride 16), 256, 512 (stride 32), centred on
each cell; boxes and points are decoded SSD-style with variances (0.1, 0.2). Input: BGR float minus the
mean (104, 117, 123), unscaled, at any size.

Checked on ../shared (FACTS.md section 4): 82/82 faces found, median eye-centre error 0.044 of the
inter-ocular distance against dlib's 68 points.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import registry
from ..errors import ModelUnavailableError
from .base import Detection, nms

WEIGHTS = ("retinaface", "mobilenet0.25_Final.pth")

_MEAN_BGR = (104.0, 117.0, 123.0)
_STRIDES = (8, 16, 32)
_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
_VARIANCES = (0.1, 0.2)
_LEAKY = 0.1  # biubug6 uses LeakyReLU(0.1) throughout when the FPN has <= 64 channels


# --- network -------------------------------------------------------------------------------------
# Sequential layouts fix the state-dict indices: conv at 0, batch norm at 1, activation at 2 (and the
# pointwise conv at 3, its batch norm at 4 in a depthwise-separable block).

def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.LeakyReLU(_LEAKY, inplace=True))
    return nn.Sequential(*layers)


def _conv_dw(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1, each with batch norm and leaky ReLU (MobileNetV1 block)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
        nn.LeakyReLU(_LEAKY, inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout),
        nn.LeakyReLU(_LEAKY, inplace=True),
    )


class MobileNetV1x025(nn.Module):
    """The MobileNetV1 x0.25 body; returns the stride 8, 16 and 32 feature maps (64, 128, 256 ch)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 2), _conv_dw(8, 16, 1), _conv_dw(16, 32, 2), _conv_dw(32, 32, 1),
            _conv_dw(32, 64, 2), _conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2), *[_conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return [c3, c4, c5]


class FPN(nn.Module):
    def __init__(self, in_channels: tuple[int, ...] = (64, 128, 256), out: int = 64) -> None:
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out, k=1)
        self.output2 = _conv_bn(in_channels[1], out, k=1)
        self.output3 = _conv_bn(in_channels[2], out, k=1)
        self.merge1 = _conv_bn(out, out)
        self.merge2 = _conv_bn(out, out)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[-2:], mode="nearest"))
        return [p3, p4, p5]


class SSH(nn.Module):
    """Single-stage headless context module: 3x3, 5x5 and 7x7 receptive fields, concatenated."""

    def __init__(self, cin: int = 64, cout: int = 64) -> None:
        super().__init__()
        self.conv3X3 = _conv_bn(cin, cout // 2, act=False)
        self.conv5X5_1 = _conv_bn(cin, cout // 4)
        self.conv5X5_2 = _conv_bn(cout // 4, cout // 4, act=False)
        self.conv7X7_2 = _conv_bn(cout // 4, cout // 4)
        self.conv7x7_3 = _conv_bn(cout // 4, cout // 4, act=False)  # lower-case x: the repo's own name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.conv3X3(x)
        t = self.conv5X5_1(x)
        b5 = self.conv5X5_2(t)
        b7 = self.conv7x7_3(self.conv7X7_2(t))
        return F.relu(torch.cat([b3, b5, b7], dim=1))


class _Head(nn.Module):
    """A 1x1 conv giving ``per_anchor`` values for each of ``anchors`` anchors at every location."""

    def __init__(self, per_anchor: int, cin: int = 64, anchors: int = 2) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(cin, anchors * per_anchor, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, A*K, H, W) -> (B, H*W*A, K): row-major locations, the anchors of one location adjacent.
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.per_anchor)


class RetinaFaceNet(nn.Module):
    """(B, 3, H, W) mean-subtracted BGR -> class logits (B, N, 2), box offsets (B, N, 4),
    point offsets (B, N, 10), N = 2 * sum over strides of ceil(H/s) * ceil(W/s)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = MobileNetV1x025()
        self.fpn = FPN()
        self.ssh1, self.ssh2, self.ssh3 = SSH(), SSH(), SSH()
        self.ClassHead = nn.ModuleList([_Head(2) for _ in _STRIDES])
        self.BboxHead = nn.ModuleList([_Head(4) for _ in _STRIDES])
        self.LandmarkHead = nn.ModuleList([_Head(10) for _ in _STRIDES])

    def forward(self, x: torch.Tensor):
        """Returns logits, box offsets, point offsets and the (H, W) of the three feature maps."""
        p = self.fpn(self.body(x))
        feats = [self.ssh1(p[0]), self.ssh2(p[1]), self.ssh3(p[2])]
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        boxes = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        points = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        sizes = [tuple(f.shape[-2:]) for f in feats]
        return logits, boxes, points, sizes


# --- weights --------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _load_net(path: str) -> RetinaFaceNet:
    """Build the network and load the state dict once per process (per weight file)."""
    net = RetinaFaceNet()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
        net.load_state_dict(state, strict=True)
    except Exception as exc:  # a truncated or foreign file: one readable message
        raise ModelUnavailableError(
            f"{path} is not a RetinaFace mobilenet0.25 state dict ({type(exc).__name__}: {exc})."
        ) from None
    return net.eval().requires_grad_(False)


# --- anchors and decoding --------------------------------------------------------------------------

def anchors(sizes: list[tuple[int, int]]) -> np.ndarray:
    """Anchor (cx, cy, side) in input pixels, (N, 3), in the order the heads emit them."""
    out = []
    for (h, w), stride, sides in zip(sizes, _STRIDES, _MIN_SIZES):
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        centres = np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], axis=-1).reshape(-1, 1, 2)
        centres = np.repeat(centres, len(sides), axis=1)  # (h*w, A, 2)
        side = np.broadcast_to(np.asarray(sides, np.float32)[None, :, None], (h * w, len(sides), 1))
        out.append(np.concatenate([centres, side], axis=-1).reshape(-1, 3))
    return np.concatenate(out).astype(np.float32)


def decode(anc: np.ndarray, box: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SSD-style decoding with variances. anc (N, 3), box (N, 4), pts (N, 10) -> boxes (N, 4)
    x0, y0, x1, y1 and points (N, 5, 2), in input pixels."""
    c, s = anc[:, None, :2], anc[:, None, 2:]
    v_c, v_s = _VARIANCES
    ctr = c[:, 0] + box[:, :2] * v_c * s[:, 0]
    wh = s[:, 0] * np.exp(box[:, 2:] * v_s)
    boxes = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1)
    points = c + pts.reshape(-1, 5, 2) * v_c * s
    return boxes, points


# --- detector --------------------------------------------------------------------------------------

class RetinaFaceDetector:
    """RetinaFace mobilenet0.25: boxes and the five InsightFace points.

    score_threshold: 0.8 on the face probability. biubug6 draws faces above 0.6; 0.8 keeps every
        face in the ../shared photos while a blank or noise image gives none (tests).
    nms_iou: 0.4, as in the reference implementation.
    max_side: a photo whose long side exceeds it is detected on a downscaled copy (the smallest
        anchor is 16 px, so 1280 still finds faces down to about 1.5% of the long side) and the
        results are scaled back to the photo.
    """

    name = "retinaface"

    def __init__(self, weights: str | Path | None = None, *, score_threshold: float = 0.8,
                 nms_iou: float = 0.4, max_side: int = 1280) -> None:
        path = Path(weights) if weights is not None else registry.resolve(*WEIGHTS)
        self.net = _load_net(str(path))
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_side = max_side

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """rgb: (H, W, 3) uint8. Returns detections in photo pixels, best first."""
        h, w = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        img = rgb if scale == 1.0 else cv2.resize(
            rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        sy, sx = img.shape[0] / h, img.shape[1] / w  # exact per-axis factors after rounding

        x = torch.from_numpy(np.ascontiguousarray(img[..., ::-1], dtype=np.float32))  # RGB -> BGR
        x = (x - torch.tensor(_MEAN_BGR)).permute(2, 0, 1)[None]
        with torch.inference_mode():
            logits, box, pts, sizes = self.net(x)
        scores = torch.softmax(logits[0], dim=-1)[:, 1].numpy()
        keep = np.flatnonzero(scores > self.score_threshold)
        if keep.size == 0:
            return []
        anc = anchors(sizes)[keep]
        boxes, points = decode(anc, box[0].numpy()[keep], pts[0].numpy()[keep])
        scores = scores[keep]

        order = nms(boxes, scores, self.nms_iou)
        back = np.array([sx, sy], np.float32)
        dets = []
        for i in order:
            b = (boxes[i].reshape(2, 2) / back).reshape(4)
            b = np.clip(b, 0, [w, h, w, h])
            dets.append(Detection(box=b.astype(np.float64), score=float(scores[i]),
                                  points5=(points[i] / back).astype(np.float64)))
        return dets
