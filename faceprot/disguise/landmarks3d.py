"""Differentiable 68-point landmarks: InsightFace's ``1k3d68.onnx`` run through faceprot's ONNX path.

The diffusion engine's landmark terms (Laplacian smoothness, action-unit closeness) need the
landmarks of the edited image as a function of its pixels; dlib's regression trees give no
gradient. InsightFace's 3-D 68-point model is a CNN, so :func:`faceprot.recognizers.onnx_torch.onnx_to_torch`
makes it differentiable. Its 68 points follow the iBUG 300-W layout, dlib's.

The model's conventions (InsightFace python package, ``model_zoo/landmark.py``; written here
from its description, not copied):

* **input**: a 192 x 192 square crop, RGB, NCHW float. Graphs whose first nodes subtract and
  multiply (names starting ``Sub``/``_minus`` and ``Mul``/``_mul`` among the first 8 nodes, or
  a ``bn_data`` batch-norm among the first 3) normalise inside and take raw pixels in [0, 255];
  others take ``(pixel - 127.5) / 128``. 1k3d68 is of the first kind (insightface logs it with
  mean 0.0, std 1.0);
* **crop**: the detector box's centre, side 1.5 x the box's longer side, no rotation;
* **output**: (B, 3309) = 1103 points x (x, y, z); the last 68 are the landmarks, with x and y in
  [-1, 1] over the crop: crop pixel = (v + 1) * 96. z is depth (unused here).

In the canonical square the crop is fixed (:data:`LANDMARK_CROP`): the engine reads it from the
CelebA-HQ-framed image (:mod:`.framing`), which has the photo's own pixels around the face.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import torch
from torch import nn

from .. import registry
from ..canonical import compose_affine, invert_affine
from ..errors import ModelUnavailableError
from ..recognizers.onnx_torch import onnx_to_torch
from .framing import affine_resample

REGISTRY_KEY = "landmarks-3d68"
FILENAME = "models/antelopev2/1k3d68.onnx"
#: The model's input side.
INPUT_SIZE = 192
#: Its output: 1103 points x 3 coordinates; the landmarks are the last 68.
OUTPUT_SIZE = 3309
POINTS = 68

#: The crop in canonical pixels: centre (x, y) and side. InsightFace crops 1.5 x the detector box's
#: longer side around the box's centre. RetinaFace boxes of 19 LFW faces in ../shared, mapped into
#: the canonical square (2026-12-05): median centre (125, 136), size 153 x 216, so a side of 324
#: (10th to 90th percentile 312 to 342). The centre's x is the template's axis, 128.
LANDMARK_CROP = ((128.0, 136.0), 324.0)


def crop_from_canonical(crop: tuple[tuple[float, float], float] = LANDMARK_CROP) -> np.ndarray:
    """(2, 3) map from canonical pixels to the 192 x 192 crop's pixels (cv2's pixel centres)."""
    (cx, cy), side = crop
    s = INPUT_SIZE / side
    return np.array([[s, 0.0, INPUT_SIZE / 2 - s * cx], [0.0, s, INPUT_SIZE / 2 - s * cy]])


def normalises_itself(graph: onnx.GraphProto) -> bool:
    """InsightFace's rule: the graph normalises its input when its first nodes subtract and multiply
    (or begin with a ``bn_data`` batch-norm); then it takes raw pixels in [0, 255]."""
    sub = mul = False
    for i, node in enumerate(graph.node[:8]):
        sub |= node.name.startswith(("Sub", "_minus"))
        mul |= node.name.startswith(("Mul", "_mul"))
        if i < 3 and node.name == "bn_data":
            sub = mul = True
    return sub and mul


class Landmarks3D(nn.Module):
    """68 landmarks of faces in an image whose map to canonical pixels is known, differentiable.

    Args:
        net: the converted graph (:func:`~faceprot.recognizers.onnx_torch.onnx_to_torch`).
        raw_pixels: the graph takes [0, 255] (it normalises itself); else ``(p - 127.5) / 128``.

    Call with ``(images, canonical_from_image)``:
        images: (B, 3, H, W) RGB in [0, 1];
        canonical_from_image: (2, 3) map from the images' pixels to canonical pixels (identity for
            canonical faces, :data:`.framing.CANONICAL_FROM_CELEBAHQ` for CelebA-HQ-framed ones).
    Returns (B, 68, 2) landmarks in canonical pixels, float32. Crop pixels outside the image are 0
    (black), as in InsightFace's own crop.
    """

    def __init__(self, net: nn.Module, raw_pixels: bool):
        super().__init__()
        self.net = net
        self.raw_pixels = raw_pixels
        for p in self.parameters():
            p.requires_grad_(False)

    def model_input(self, images: torch.Tensor, canonical_from_image: np.ndarray) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, 192, 192), the crop normalised as the graph expects."""
        crop_from_image = compose_affine(crop_from_canonical(), canonical_from_image)
        crop = affine_resample(images, invert_affine(crop_from_image), INPUT_SIZE, padding_mode="zeros") * 255.0
        return crop if self.raw_pixels else (crop - 127.5) / 128.0

    @staticmethod
    def decode(output: torch.Tensor) -> torch.Tensor:
        """The graph's (B, 3309) output -> (B, 68, 2) landmarks in crop pixels."""
        if output.shape[-1] != OUTPUT_SIZE:
            raise ValueError(f"expected a (B, {OUTPUT_SIZE}) output, got {tuple(output.shape)}")
        points = output.reshape(output.shape[0], -1, 3)[:, -POINTS:, :2]
        return (points + 1.0) * (INPUT_SIZE // 2)

    def forward(self, images: torch.Tensor, canonical_from_image: np.ndarray) -> torch.Tensor:
        crop_points = self.decode(self.net(self.model_input(images, canonical_from_image)))
        back = torch.as_tensor(invert_affine(crop_from_canonical()), dtype=crop_points.dtype, device=crop_points.device)
        return crop_points @ back[:, :2].T + back[:, 2]


@functools.lru_cache(maxsize=None)
def _load(path: str, device: str) -> Landmarks3D:
    model = onnx.load(path)
    outputs = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output]
    if len(outputs) != 1 or outputs[0][-1:] != [OUTPUT_SIZE]:
        raise ModelUnavailableError(
            f"{path} is not InsightFace's 68-point 3-D landmark model: it should have one output of "
            f"{OUTPUT_SIZE} numbers, and it has {outputs}. Put 1k3d68.onnx from the antelopev2 pack there."
        )
    return Landmarks3D(onnx_to_torch(model), normalises_itself(model.graph)).eval().to(device)


def load_landmarks_3d68(device: str | torch.device = "cpu") -> Landmarks3D:
    """The landmark model, through the registry (``$FACEPROT_MODEL_DIR/landmarks-3d68/`` or the Hub
    cache), once per file and device. Shared: its weights are frozen and never changed.

    Raises:
        ModelUnavailableError: the file is missing, or is not a 68-point 3-D landmark model.
    """
    return _load(str(registry.resolve(REGISTRY_KEY, FILENAME)), str(torch.device(device)))


__all__ = ["Landmarks3D", "load_landmarks_3d68", "crop_from_canonical", "normalises_itself", "LANDMARK_CROP",
           "INPUT_SIZE", "OUTPUT_SIZE"]
