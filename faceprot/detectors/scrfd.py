"""InsightFace SCRFD face detector (ONNX) with five points, run with onnxruntime.

SCRFD (Guo et al., "Sample and Computation Redistribution for Efficient Face Detection", 2021) is the
detector of InsightFace's antelopev2 pack, which the GPU Space uses. Its graph takes a (1, 3, H, W)
RGB image scaled as (x - 127.5) / 128 and, for each stride 8, 16, 32 and 2 anchors per location,
returns: sigmoid face scores (N, 1), box distances (N, 4) left, top, right, bottom, and five points
(N, 10) as offsets, all in stride units from the anchor centre (x*stride, y*stride) of the cell.
Row-major cells, the anchors of one cell adjacent. Some exports add a batch axis: (1, N, C).

The photo is letterboxed into the input: resized to fit with its aspect ratio kept and placed in the
top-left corner of a zero canvas, as insightface's ``SCRFD.detect`` does.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from .. import registry
from ..errors import ModelUnavailableError
from .base import Detection, nms

WEIGHTS = ("scrfd", "models/antelopev2/scrfd_10g_bnkps.onnx")

_STRIDES_3 = (8, 16, 32)
_STRIDES_5 = (8, 16, 32, 64, 128)  # the 15-output (and 10-output) SCRFD variants


@functools.lru_cache(maxsize=4)
def _session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                 if p in ort.get_available_providers()]
    try:
        return ort.InferenceSession(path, so, providers=providers)
    except Exception as exc:  # a truncated or foreign file: one readable message
        raise ModelUnavailableError(f"{path} is not a readable ONNX model ({exc}).") from None


def _fixed_size(shape) -> tuple[int, int] | None:
    """(width, height) when the graph's input has a fixed spatial size, else None."""
    h, w = shape[2], shape[3]
    return (w, h) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None


def letterbox(rgb: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, float]:
    """Fit rgb (H, W, 3) into size (width, height) keeping its aspect ratio, top-left on zeros.

    Returns the canvas and the per-axis factors (input pixels per photo pixel)."""
    h, w = rgb.shape[:2]
    tw, th = size
    if h / w > th / tw:
        nh, nw = th, max(1, int(th * w / h))
    else:
        nw, nh = tw, max(1, int(tw * h / w))
    canvas = np.zeros((th, tw, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(rgb, (nw, nh))
    return canvas, nw / w, nh / h


def _cell_centres(h: int, w: int, stride: int, per_cell: int) -> np.ndarray:
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    c = np.stack([xs, ys], axis=-1).reshape(-1, 1, 2).astype(np.float32) * stride
    return np.repeat(c, per_cell, axis=1).reshape(-1, 2)


# Own, not insightface.model_zoo's SCRFD: test_insightface_model_zoo_scrfd_misplaces_the_face_on_a_wide_photo
class SCRFDDetector:
    """SCRFD (antelopev2 ``scrfd_10g_bnkps.onnx``): boxes and the five InsightFace points.

    model: an explicit .onnx path; default: the registry's ``scrfd`` file.
    input_size: (width, height) for graphs with a dynamic input; a fixed-size graph uses its own.
    score_threshold 0.5 and nms_iou 0.4 are insightface's defaults for this model.
    """

    name = "scrfd"

    def __init__(self, model: str | Path | None = None, *, input_size: tuple[int, int] = (640, 640),
                 score_threshold: float = 0.5, nms_iou: float = 0.4) -> None:
        path = Path(model) if model is not None else registry.resolve(*WEIGHTS)
        self.session = _session(str(path))
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_size = _fixed_size(inp.shape) or tuple(input_size)
        self.output_names = [o.name for o in self.session.get_outputs()]
        n = len(self.output_names)
        if n not in (6, 9, 10, 15):
            raise ModelUnavailableError(
                f"{path} is not an SCRFD detector: it has {n} outputs, not 6, 9, 10 or 15.")
        self.levels = n // 3 if n in (9, 15) else n // 2
        self.has_points = n in (9, 15)
        self.strides = _STRIDES_3 if self.levels == 3 else _STRIDES_5
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou

    def _decode(self, outs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Raw outputs -> scores (N,), boxes (N, 4) and points (N, 5, 2) in input pixels, above the
        threshold. Outputs: scores per level, then boxes per level, then points per level."""
        if outs[0].ndim == 3:  # batched export: (1, N, C)
            outs = [o[0] for o in outs]
        tw, th = self.input_size
        L = self.levels
        scores, boxes, points = [], [], []
        for i, stride in enumerate(self.strides):
            s = outs[i].reshape(-1)
            gh, gw = -(-th // stride), -(-tw // stride)
            per_cell = s.size // (gh * gw)
            keep = np.flatnonzero(s >= self.score_threshold)
            if keep.size == 0:
                continue
            c = _cell_centres(gh, gw, stride, per_cell)[keep]
            d = outs[L + i].reshape(-1, 4)[keep] * stride
            scores.append(s[keep])
            boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
            if self.has_points:
                k = outs[2 * L + i].reshape(-1, 5, 2)[keep] * stride
                points.append(c[:, None, :] + k)
        if not scores:
            return np.zeros(0, np.float32), np.zeros((0, 4), np.float32), None
        return (np.concatenate(scores), np.concatenate(boxes),
                np.concatenate(points) if self.has_points else None)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """rgb: (H, W, 3) uint8. Returns detections in photo pixels, best first."""
        h, w = rgb.shape[:2]
        canvas, fx, fy = letterbox(rgb, self.input_size)
        blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outs = self.session.run(self.output_names, {self.input_name: blob})
        scores, boxes, points = self._decode(outs)
        back = np.array([fx, fy], np.float32)
        dets = []
        for i in nms(boxes, scores, self.nms_iou) if scores.size else []:
            b = np.clip((boxes[i].reshape(2, 2) / back).reshape(4), 0, [w, h, w, h])
            p = None if points is None else (points[i] / back).astype(np.float64)
            dets.append(Detection(box=b.astype(np.float64), score=float(scores[i]), points5=p))
        return dets
