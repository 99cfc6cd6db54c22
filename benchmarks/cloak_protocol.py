"""The protocol of the cloak benchmark (``cloak.py``): who is enrolled, what is probed, how a probe is scored.

* ``gallery_embeddings``: every evaluator's clean embedding of every photo of a faces folder and
  faceprot's face count per photo, cached in ``benchmarks/results/cache/`` (shared by all runs,
  shards and scripts on the same folder);
* ``plan_people``: per identity, the selfie (first single-face photo) and the probes (its other
  single-face photos);
* ``score_probe``: each evaluator's verdict on one protected probe (top-1 / top-5 among the
  gallery without the probe's own original, verification pairs at the evaluator's threshold);
  ``score_embedding``: one evaluator's verdict on an embedding already made (the disguise
  benchmark scores impersonation on the same embedding);
* ``quality`` (PSNR and SSIM over the face region and the whole photo), ``degrade`` (what a
  platform might do to the PNG) and ``save_and_reread`` (the evaluators see what was saved).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image
from tqdm import tqdm

from faceprot.errors import NoFaceError
from faceprot.evaluators import get_evaluator
from faceprot.faces import detect_faces
from faceprot.io import encode_png, load_image
from faceprot.metrics import similarity_matrix
from faceprot.visibility import psnr, ssim

EVALUATORS = ["dlib-cpp", "dlib-resnet", "mobilefacenet"]
SETTINGS = {"dlib-resnet": ["dlib-resnet"], "mobilefacenet": ["mobilefacenet"],
            "both": ["dlib-resnet", "mobilefacenet"]}
CACHE_VERSION = "1"


def gallery_embeddings(entries: list[dict], cache: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Clean embeddings of every photo for every evaluator, and faceprot's face count per photo.

    Cached on disk (keyed by the files' names and sizes and CACHE_VERSION), so shards share them.
    """
    key = hashlib.sha1(json.dumps([CACHE_VERSION] + [(e["file"], Path(e["path"]).stat().st_size)
                                                     for e in entries]).encode()).hexdigest()[:16]
    path = cache / f"gallery-{key}.npz"
    cache.mkdir(parents=True, exist_ok=True)
    # one process computes it, the others wait and read it (shards and parallel tests share it)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            z = np.load(path)
            return {k: z[k] for k in EVALUATORS}, z["n_faces"]
        out, n_faces = _embed_gallery(entries)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, n_faces=n_faces, **out)
        tmp.replace(path)  # readers never see half a file
    return out, n_faces


def _embed_gallery(entries: list[dict]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    emb = {k: [] for k in EVALUATORS}
    n_faces = []
    for e in tqdm(entries, desc="gallery", file=sys.stderr):
        rgb = load_image(e["path"]).rgb
        faces = detect_faces(rgb)
        n_faces.append(len(faces))
        for name in EVALUATORS:
            emb[name].append(_embed(name, rgb))
    return {k: np.stack(v) for k, v in emb.items()}, np.array(n_faces)


def _embed(name: str, rgb: np.ndarray) -> np.ndarray:
    """The evaluator's embedding of the largest face it finds; NaNs when it finds none."""
    ev = get_evaluator(name)
    try:
        return np.asarray(ev.embed(rgb), np.float32)
    except NoFaceError:
        dim = 128 if name.startswith("dlib") or name == "mobilefacenet" else 512
        return np.full(dim, np.nan, np.float32)



def plan_people(entries: list[dict], n_faces: np.ndarray, people: int, start: int = 0) -> list[dict]:
    """Per identity: the selfie (first single-face photo) and the probes (other single-face ones);
    ``people`` of them (0 = all) from the ``start``-th."""
    by: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        if n_faces[i] == 1:
            by.setdefault(e["identity"], []).append(i)
    plan = [{"identity": k, "selfie": v[0], "probes": v[1:]} for k, v in by.items() if len(v) >= 2][start:]
    return plan[:people] if people else plan


def score_probe(rgb: np.ndarray, probe: int, identity: str, ids: np.ndarray, gallery: dict) -> dict:
    """Each evaluator's verdict on one (protected) probe photo, read back as a PNG would be."""
    return {name: score_embedding(name, _embed(name, rgb), probe, identity, ids, gallery) for name in EVALUATORS}


def score_embedding(name: str, e: np.ndarray, probe: int, identity: str, ids: np.ndarray, gallery: dict) -> dict:
    """One evaluator's verdict on its embedding ``e`` of a probe (NaNs: it found no face): top-1 /
    top-5 among the gallery without the probe's own original, and verification against the
    identity's other photos at the evaluator's threshold."""
    if np.isnan(e).any():
        return {"found": False}
    ev = get_evaluator(name)
    keep = np.ones(len(ids), bool)
    keep[probe] = False  # the gallery excludes the probe's own original
    g = gallery[name]
    ok = keep & ~np.isnan(g).any(1)
    sims = similarity_matrix(e[None], g[ok], ev.metric)[0]
    order = np.argsort(-sims)
    same = ids[ok][order] == identity
    own = ids[ok] == identity
    own_scores = similarity_matrix(e[None], g[ok][own], ev.metric)[0]
    matches = sum(ev.is_match(float(s if ev.metric == "cosine" else -s)) for s in own_scores)
    return {"found": True, "top1": bool(not same[:1].any()), "top5": bool(not same[:5].any()),
            "verif_protected": int(len(own_scores) - matches), "verif_pairs": int(len(own_scores))}


# the face-region quality lives in the package (faceprot.visibility), beside the colour shift
_psnr, _ssim = psnr, ssim


def quality(clean: np.ndarray, prot: np.ndarray, region: np.ndarray) -> dict:
    return {"psnr_face": _psnr(clean, prot, region), "ssim_face": _ssim(clean, prot, region),
            "psnr_photo": _psnr(clean, prot), "ssim_photo": _ssim(clean, prot)}


def degrade(rgb: np.ndarray, how: str) -> np.ndarray:
    """What a platform might do to the PNG: "png" (nothing), "jpeg75", "half" (downscale)."""
    if how == "png":
        return rgb
    im = Image.fromarray(rgb)
    if how == "jpeg75":
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=75)
        return load_image(buf.getvalue()).rgb
    if how == "half":
        return np.array(im.resize((max(1, rgb.shape[1] // 2), max(1, rgb.shape[0] // 2)), Image.LANCZOS))
    raise ValueError(how)


def save_and_reread(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Every protected probe is saved as a PNG, and the evaluators see what was saved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(rgb))
    return load_image(path).rgb

