"""The detector interface: an RGB photo in, face boxes (and optionally five points) out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np


@dataclass
class Detection:
    """One detected face, in the photo's pixel coordinates.

    box: (4,) float, (x0, y0, x1, y1).
    score: detector confidence (its own scale).
    points5: (5, 2) float or None: left eye, right eye, nose tip, left mouth corner, right mouth
        corner, in the InsightFace order, where the detector predicts them.
    """

    box: np.ndarray
    score: float
    points5: np.ndarray | None = None


class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """rgb: (H, W, 3) uint8. Returns detections, best first."""
        ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression (``cv2.dnn.NMSBoxes``): drops a box whose IoU with a better one
    exceeds ``iou_threshold``. boxes (N, 4) x0,y0,x1,y1; returns kept indices, best first."""
    if len(boxes) == 0:
        return []
    boxes = np.asarray(boxes, np.float64)
    # NMSBoxes drops scores at or below its threshold, which must be >= 0, and dlib's HOG scores go
    # negative (tests/test_detectors_extra.py::test_nms_keeps_negative_scores): pass ranks, best = 1.
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    ranks = np.empty(len(order), np.float32)
    ranks[order] = np.arange(len(order), 0, -1) / len(order)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
    return [int(i) for i in cv2.dnn.NMSBoxes(xywh, ranks, 0.0, float(iou_threshold))]
