"""End-to-end benchmark of the personal cloak (FaceCloak) on identity-labelled faces.

Protocol (per person): enroll from the first photo with exactly one detected face; the probes are
their other single-face photos. Every protected probe is saved as a PNG, and each evaluator
re-reads it and runs its own detection and alignment. The gallery is every clean photo of the
folder except the probe's own original. A probe is protected at top-n when no photo of its own
identity is among its n nearest gallery photos (OPOM protocol); verification PSR is the share of
(protected probe, clean photo of the same person) pairs that no longer match at the evaluator's
threshold. Probes in which an evaluator finds no face are counted separately.

    python benchmarks/cloak.py --quick                      # CI: 20 people, asserts the bar
    python benchmarks/cloak.py --people 100 --shard 1/4 --resume
    python benchmarks/cloak.py --people 100 --report        # merge shards, write tables + plots
    python benchmarks/cloak.py --faces ../shared/assets/faces/photos --people 0

Results go to ``benchmarks/results/cloak/<run>/`` (JSON per shard, report.md, report.json, plots).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from _common import RESULTS, SHARED_FACES
from faceprot.canonical import CANONICAL_SIZE, align, paste_back, region_mask
from faceprot.cloak.enroll import PRESETS, enroll
from faceprot.cloak.apply import apply_mask
from faceprot.cloak.focus import HighPassMask, face_hull
from faceprot.cloak.optimizer import CloakConfig, UniversalCloak
from faceprot.datasets import load_faceset
from faceprot.errors import NoFaceError
from faceprot.evaluators import get_evaluator
from faceprot.faces import detect_faces, find_faces
from faceprot.io import encode_png, load_image
from faceprot.metrics import similarity_matrix
from faceprot.recognizers import load_surrogate
from faceprot.runtime import configure_threads

EVALUATORS = ["dlib-cpp", "dlib-resnet", "mobilefacenet"]
SETTINGS = {"dlib-resnet": ["dlib-resnet"], "mobilefacenet": ["mobilefacenet"],
            "both": ["dlib-resnet", "mobilefacenet"]}
CACHE_VERSION = "1"
#: mask-reuse settings of a full run: "N" = apply with refine=N and strip_weight 0 (the only
#: refinement until 2026-12-04; runs up to lfw-full-v4 measured "0" and "3"), "Ns" = with the
#: strip-resistant loss (strip_weight 1, apply_mask's default); --reuse-settings changes them
REUSE_SETTINGS = ("0", "3s", "10s")


def reuse_setting(key: str) -> tuple[int, float]:
    """'3' -> (3 refine steps, strip weight 0); '3s' -> (3, 1.0)."""
    return (int(key[:-1]), 1.0) if key.endswith("s") else (int(key), 0.0)


# ----------------------------------------------------------------------------------- gallery


def gallery_embeddings(entries: list[dict], cache: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Clean embeddings of every photo for every evaluator, and faceprot's face count per photo.

    Cached on disk (keyed by the files' names and sizes and CACHE_VERSION), so shards share them.
    """
    key = hashlib.sha1(json.dumps([CACHE_VERSION] + [(e["file"], Path(e["path"]).stat().st_size)
                                                     for e in entries]).encode()).hexdigest()[:16]
    path = cache / f"gallery-{key}.npz"
    if path.exists():
        z = np.load(path)
        return {k: z[k] for k in EVALUATORS}, z["n_faces"]
    emb = {k: [] for k in EVALUATORS}
    n_faces = []
    for e in tqdm(entries, desc="gallery", file=sys.stderr):
        rgb = load_image(e["path"]).rgb
        faces = detect_faces(rgb)
        n_faces.append(len(faces))
        for name in EVALUATORS:
            emb[name].append(_embed(name, rgb))
    out = {k: np.stack(v) for k, v in emb.items()}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, n_faces=np.array(n_faces), **out)
    return out, np.array(n_faces)


def _embed(name: str, rgb: np.ndarray) -> np.ndarray:
    """The evaluator's embedding of the largest face it finds; NaNs when it finds none."""
    ev = get_evaluator(name)
    try:
        return np.asarray(ev.embed(rgb), np.float32)
    except NoFaceError:
        dim = 128 if name.startswith("dlib") or name == "mobilefacenet" else 512
        return np.full(dim, np.nan, np.float32)


# ----------------------------------------------------------------------------------- protocol


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
    out = {}
    keep = np.ones(len(ids), bool)
    keep[probe] = False  # the gallery excludes the probe's own original
    for name in EVALUATORS:
        e = _embed(name, rgb)
        if np.isnan(e).any():
            out[name] = {"found": False}
            continue
        ev = get_evaluator(name)
        g = gallery[name]
        ok = keep & ~np.isnan(g).any(1)
        sims = similarity_matrix(e[None], g[ok], ev.metric)[0]
        order = np.argsort(-sims)
        same = ids[ok][order] == identity
        own = ids[ok] == identity
        own_scores = similarity_matrix(e[None], g[ok][own], ev.metric)[0]
        matches = sum(ev.is_match(float(s if ev.metric == "cosine" else -s)) for s in own_scores)
        out[name] = {"found": True, "top1": bool(not same[:1].any()), "top5": bool(not same[:5].any()),
                     "verif_protected": int(len(own_scores) - matches), "verif_pairs": int(len(own_scores))}
    return out


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = d[mask].mean() if mask is not None else d.mean()
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def _ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    from skimage.metrics import structural_similarity

    _, full = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    full = full.mean(-1)
    return float(full[mask].mean() if mask is not None else full.mean())


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


# ----------------------------------------------------------------------------------- baselines


def noise_baseline(rgb: np.ndarray, face, budget: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(a) uniform random noise with the mask's per-pixel budget."""
    d = rng.uniform(-1, 1, (CANONICAL_SIZE, CANONICAL_SIZE, 3)) * budget[0][..., None]
    return paste_back(rgb, face.transform, d.transpose(2, 0, 1))


class ReleasedCodeCloak:
    """(b) the released code's approach (FACTS.md section 6): the detector's face box resized to
    112x112 with no alignment; a universal delta optimised there at 4 levels with no focusing in
    the forward pass; at application the delta is doubled (8 levels) and doubled again inside the
    stickers and high-pass pixels (16 levels), and put back by a plain resize of the box region."""

    size = 112

    def __init__(self, surrogates: list[str], iterations: int = 10, seed: int = 0):
        self.models = [load_surrogate(n) for n in surrogates]
        self.iterations = iterations
        self.seed = seed

    def _box(self, rgb, face):
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, rgb.shape[1]), min(y1, rgb.shape[0])
        return x0, y0, x1, y1

    def _crop(self, rgb, face) -> np.ndarray:
        x0, y0, x1, y1 = self._box(rgb, face)
        return np.array(Image.fromarray(rgb[y0:y1, x0:x1]).resize((self.size, self.size), Image.BILINEAR))

    def _to_canonical(self, crops: torch.Tensor) -> torch.Tensor:
        """The surrogates take canonical input; feed the unaligned box crop where their crops sit."""
        import torch.nn.functional as F

        x = F.interpolate(crops, size=(224, 224), mode="bilinear", align_corners=False)
        return F.pad(x, (16, 16, 8, 24), mode="replicate")

    def enroll(self, selfie_rgb: np.ndarray, views_rgb: list[np.ndarray]):
        crops = []
        for pic in [selfie_rgb] + views_rgb:
            try:
                crops.append(self._crop(pic, find_faces(pic)[0]))
            except NoFaceError:
                pass
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
        eps = 4 / 255
        cloak = UniversalCloak(self.models, CloakConfig(eps=eps, eps_high=eps, iterations=self.iterations,
                                                        use_attention=False, use_anchors=False, use_eot=False))

        to_canonical = self._to_canonical

        class BoxSpace(torch.nn.Module):  # the surrogates see box crops mapped into their input region
            def __init__(s, m):
                super().__init__()
                s.m, s.name, s.metric, s.threshold = m, m.name, m.metric, m.threshold

            @property
            def device(s):
                return s.m.device

            def forward(s, t):
                return s.m(to_canonical(t))

        cloak.surrogates = [BoxSpace(m) for m in self.models]
        person = cloak.person_embeddings(x)
        budget = torch.full((1, self.size, self.size), eps)
        res = cloak(x, budget, None, person, seed=self.seed)
        # the focusing maps, added only at application (as the released code does)
        face = find_faces(selfie_rgb)[0]
        crop = self._crop(selfie_rgb, face)
        marks = (face.landmarks68 - face.box[:2]) * self.size / np.array(
            [face.box[2] - face.box[0], face.box[3] - face.box[1]])
        hull = face_hull(marks, self.size)
        from faceprot.cloak.focus import RegionStickers

        high = RegionStickers().mask(marks, size=self.size) | HighPassMask().mask(crop, hull)
        scale = np.where(high, 4.0, 2.0)[None]
        self.delta = res.delta.numpy() * scale  # (3, 112, 112), up to 16 levels
        return self

    def apply(self, rgb: np.ndarray, face) -> np.ndarray:
        x0, y0, x1, y1 = self._box(rgb, face)
        d = self.delta.transpose(1, 2, 0).astype(np.float32) * 255
        import cv2

        d = cv2.resize(d, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        out = rgb.astype(np.float32)
        out[y0:y1, x0:x1] += d
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def per_image_pgd(rgb: np.ndarray, face, surrogates: list[str], preset: str, seed: int) -> np.ndarray:
    """(c) reference: PGD on the probe itself (its own views, budget and anchors), 2x the iterations."""
    cfg = PRESETS[preset]
    en = enroll(rgb, preset=preset, seed=seed, surrogates=surrogates, n_views=8,
                iterations=cfg["iterations"] * 2)
    return apply_mask(rgb, en.mask).picture.rgb


# ----------------------------------------------------------------------------------- one person


def run_person(p: dict, entries, ids, gallery, args, img_dir: Path) -> dict:
    """All methods, conditions and studies for one person."""
    selfie_path = entries[p["selfie"]]["path"]
    selfie = load_image(selfie_path).rgb
    probes = [(i, load_image(entries[i]["path"]).rgb) for i in p["probes"]]
    rec = {"identity": p["identity"], "selfie": entries[p["selfie"]]["file"],
           "probes": [entries[i]["file"] for i in p["probes"]], "methods": {}, "times": {}}
    rng = np.random.default_rng(args.seed)
    slug = p["identity"].replace("/", "_")

    def evaluate(method: str, protect, conditions=("png", "jpeg75", "half")):
        rows = []
        for i, clean in probes:
            try:
                face = find_faces(clean)[0]
            except NoFaceError:
                continue
            prot = protect(clean, face)
            prot = save_and_reread(prot, img_dir / slug / f"{method}__{Path(entries[i]['file']).stem}.png")
            row = {"probe": entries[i]["file"], "quality": quality(clean, prot, region_mask(clean.shape[:2], face.transform))}
            for c in conditions:
                row[c] = score_probe(degrade(prot, c), i, p["identity"], ids, gallery)
            rows.append(row)
        rec["methods"][method] = rows

    masks = {}
    for preset, setting in args.variants:
        t = time.perf_counter()
        en = enroll(selfie, preset=preset, seed=args.seed, surrogates=SETTINGS[setting])
        rec["times"][f"enroll/{preset}/{setting}"] = time.perf_counter() - t
        masks[(preset, setting)] = en
        evaluate(f"{preset}/{setting}", lambda rgb, f, m=en.mask: apply_mask(rgb, m).picture.rgb)

    main = masks.get(("medium", "both")) or next(iter(masks.values()))
    evaluate("baseline-noise", lambda rgb, f: noise_baseline(rgb, f, main.mask.budget, rng))
    if not args.quick:
        views = list(main.views.pictures()[1:])  # canonical views stand in as photos of the person
        rc = ReleasedCodeCloak(SETTINGS["both"], seed=args.seed).enroll(selfie, views)
        evaluate("baseline-released", lambda rgb, f: rc.apply(rgb, f))
        evaluate("reference-per-image", lambda rgb, f: per_image_pgd(rgb, f, SETTINGS["both"], "medium", args.seed),
                 conditions=("png",))
        rec["reuse"] = mask_reuse(main, probes, p, entries, ids, gallery, args.reuse_settings)
        rec["edge_correlation"] = edge_correlation(main)
    return rec


def _canonical_delta(clean: np.ndarray, prot: np.ndarray, face) -> np.ndarray:
    """(3, S, S) float32: what the protection changed in canonical space, in the canonical units."""
    return (align(prot, face.transform) - align(clean, face.transform))[0].numpy()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def mask_reuse(en, probes, p, entries, ids, gallery, settings=REUSE_SETTINGS) -> dict:
    """The subtraction attack and cross-photo delta correlation, per apply setting (see
    :func:`reuse_setting`; by default refine=0 and a small refine).

    The attacker has one clean/protected pair of the person (the first probe), estimates the mask
    in canonical space (align both, subtract), and subtracts it from the person's other protected
    photos through each photo's own alignment. Two more attackers: "averaged" has a pair for
    every other photo of the person and subtracts the mean of those estimates (the same as
    "after" for someone with two probes); "oracle" subtracts the universal mask itself (a leaked
    mask file gives it outright).
    """
    out = {}
    faces = [(i, clean, find_faces(clean)[0]) for i, clean in probes]
    if len(faces) < 2:
        return out
    exact = en.mask.delta  # the universal mask, (3, S, S) canonical units
    for key in settings:
        refine, strip = reuse_setting(key)
        t = time.perf_counter()
        prot = [apply_mask(clean, en.mask, refine=refine, seed=k, strip_weight=strip).picture.rgb
                for k, (_, clean, _) in enumerate(faces)]
        seconds = (time.perf_counter() - t) / len(faces)
        ests = [_canonical_delta(clean, pr, f) for (_, clean, f), pr in zip(faces, prot)]
        est = ests[0]  # the attacker's one pair: the first probe
        corr = _corr(ests[0], ests[1])
        rows = []
        for k, ((i, _, f), pr) in enumerate(zip(faces, prot)):
            if k == 0:
                continue
            attacked = paste_back(pr, f.transform, -est)
            averaged = np.mean([e for j, e in enumerate(ests) if j != k], axis=0)
            rows.append({"probe": entries[i]["file"], "before": score_probe(pr, i, p["identity"], ids, gallery),
                         "after": score_probe(attacked, i, p["identity"], ids, gallery),
                         "averaged": score_probe(paste_back(pr, f.transform, -averaged), i, p["identity"], ids, gallery),
                         "oracle": score_probe(paste_back(pr, f.transform, -exact), i, p["identity"], ids, gallery)})
        name = f"refine{refine}" + (f"-strip{strip:g}" if strip else "")
        out[name] = {"delta_correlation": corr, "seconds_per_photo": seconds, "probes": rows}
    return out


def edge_correlation(en) -> float:
    """Correlation between |delta| and the selfie's high-pass edge map, over the face."""
    face = en.focus.face
    hp = HighPassMask().zscore(en.views.pictures()[0], face)
    mag = np.abs(en.mask.delta).mean(0)
    return _corr(mag[face], hp[face])


# ----------------------------------------------------------------------------------- sweeps


SWEEPS = {
    "eps": [dict(eps=e / 255, eps_high=2 * e / 255, alpha=max(e / 4, 0.5) / 255, label=f"{e}/255") for e in (2, 4, 8, 12, 16)],
    "iterations": [dict(iterations=n, label=str(n)) for n in (2, 4, 8, 10, 16)],
    "views": [dict(n_views=n, label=str(n)) for n in (2, 4, 8, 16, 32)],
    "ablation": [
        dict(use_stickers=False, use_high_pass=False, use_attention=False, label="base"),
        dict(use_stickers=True, use_high_pass=False, use_attention=False, label="+stickers"),
        dict(use_stickers=True, use_high_pass=False, use_attention=True, label="+attention"),
        dict(use_stickers=True, use_high_pass=True, use_attention=True, label="+high-pass (full)"),
    ],
}


def run_sweeps(p, entries, ids, gallery, args) -> dict:
    selfie = load_image(entries[p["selfie"]]["path"]).rgb
    probes = [(i, load_image(entries[i]["path"]).rgb) for i in p["probes"]]
    out = {}
    for sweep, points in SWEEPS.items():
        for pt in points:
            kw = {k: v for k, v in pt.items() if k != "label"}
            en = enroll(selfie, preset="medium", seed=args.seed, surrogates=SETTINGS["both"], **kw)
            rows = []
            for i, clean in probes:
                prot = apply_mask(clean, en.mask).picture.rgb
                prot = load_image(encode_png(prot)).rgb
                rows.append(score_probe(prot, i, p["identity"], ids, gallery))
            out[f"{sweep}={pt['label']}"] = rows
    return out


def run_reuse(p, entries, ids, gallery, args) -> dict:
    """The mask-reuse study alone: the medium mask of both surrogates, each --reuse-settings."""
    selfie = load_image(entries[p["selfie"]]["path"]).rgb
    probes = [(i, load_image(entries[i]["path"]).rgb) for i in p["probes"]]
    t = time.perf_counter()
    en = enroll(selfie, preset="medium", seed=args.seed, surrogates=SETTINGS["both"])
    return {"identity": p["identity"], "selfie": entries[p["selfie"]]["file"],
            "probes": [entries[i]["file"] for i in p["probes"]], "methods": {},
            "times": {"enroll/medium/both": time.perf_counter() - t},
            "reuse": mask_reuse(en, probes, p, entries, ids, gallery, args.reuse_settings)}


# ----------------------------------------------------------------------------------- timing


def timing(args) -> dict:
    """Enrollment is timed per person in run_person; here: apply cost per face on ~1 MP photos."""
    photos = load_faceset(SHARED_FACES / "photos")
    added = []
    en = None
    for e in photos[:12]:
        rgb = load_image(e["path"]).rgb
        f = np.sqrt(1e6 / (rgb.shape[0] * rgb.shape[1]))
        rgb = np.array(Image.fromarray(rgb).resize((round(rgb.shape[1] * f), round(rgb.shape[0] * f)), Image.LANCZOS))
        try:
            faces = find_faces(rgb)
        except NoFaceError:
            continue
        if en is None:
            en = enroll(rgb, preset="medium", seed=0)
        for _ in range(2):  # warm
            apply_mask(rgb, en.mask)
        t_det, t_app = [], []
        for _ in range(5):
            t = time.perf_counter(); detect_faces(rgb); t_det.append(time.perf_counter() - t)
            t = time.perf_counter(); apply_mask(rgb, en.mask); t_app.append(time.perf_counter() - t)
        added.append((statistics.median(t_app) - statistics.median(t_det)) / len(faces))
    return {"apply_added_ms_per_face_median": 1000 * statistics.median(added),
            "apply_added_ms_per_face_max": 1000 * max(added), "photos": len(added)}


# ----------------------------------------------------------------------------------- report


def _rate(rows, ev, cond, key="top1"):
    found = [r[cond][ev] for r in rows if r[cond][ev]["found"]]
    if not found:
        return None, 0.0
    nofound = 1 - len(found) / len(rows)
    if key == "verif":
        tot = sum(f["verif_pairs"] for f in found)
        return (sum(f["verif_protected"] for f in found) / tot if tot else None), nofound
    return float(np.mean([f[key] for f in found])), nofound


def summarise(all_records: list[dict]) -> dict:
    records = [r for r in all_records if "methods" in r]  # sweeps-only records hold just "sweeps"
    methods = sorted({m for r in records for m in r["methods"]})
    s = {"people": len(records), "probes": sum(len(r["probes"]) for r in records), "methods": {}}
    for m in methods:
        rows = [row for r in records for row in r["methods"].get(m, [])]
        if not rows:
            continue
        ms = {"probes": len(rows)}
        for ev in EVALUATORS:
            e = {}
            for cond in ("png", "jpeg75", "half"):
                if cond not in rows[0]:
                    continue
                e[f"top1_{cond}"], e[f"noface_{cond}"] = _rate(rows, ev, cond)
            e["top5"], _ = _rate(rows, ev, "png", "top5")
            e["verif"], _ = _rate(rows, ev, "png", "verif")
            per_person = []
            for r in records:
                pr = r["methods"].get(m, [])
                v, _ = _rate(pr, ev, "png") if pr else (None, 0)
                if v is not None:
                    per_person.append(v)
            per_person.sort()
            k = max(1, len(per_person) // 10)
            e["top1_worst_tenth"] = float(np.mean(per_person[:k])) if per_person else None
            ms[ev] = e
        for q in ("psnr_face", "ssim_face", "psnr_photo", "ssim_photo"):
            vals = [row["quality"][q] for row in rows]
            ms[q] = float(np.mean(vals))
            ms[q + "_min"] = float(np.min(vals))
        s["methods"][m] = ms
    times = {}
    for r in records:
        for k, v in r["times"].items():
            times.setdefault(k, []).append(v)
    s["enroll_seconds"] = {k: {"first": v[0], "warm_median": statistics.median(v[1:] or v)} for k, v in times.items()}
    reuse = [r["reuse"] for r in records if r.get("reuse")]
    if reuse:
        s["reuse"] = {}
        for key in reuse[0]:
            rows = [row for ru in reuse for row in ru.get(key, {}).get("probes", [])]
            s["reuse"][key] = {"delta_correlation": float(np.mean([ru[key]["delta_correlation"] for ru in reuse if key in ru]))}
            secs = [ru[key]["seconds_per_photo"] for ru in reuse if "seconds_per_photo" in ru.get(key, {})]
            if secs:
                s["reuse"][key]["seconds_per_photo"] = float(np.median(secs))
            for ev in EVALUATORS:
                for when in ("before", "after", "averaged", "oracle"):
                    if not all(when in row for row in rows):  # runs made before these attacks
                        continue
                    found = [row[when][ev] for row in rows if row[when][ev]["found"]]
                    s["reuse"][key][f"{ev}_top1_{when}"] = float(np.mean([f["top1"] for f in found])) if found else None
    ec = [r["edge_correlation"] for r in records if "edge_correlation" in r]
    if ec:
        s["edge_correlation"] = float(np.mean(ec))
    sw = [r["sweeps"] for r in all_records if r.get("sweeps")]
    if sw:
        s["sweeps"] = {}
        for key in sw[0]:
            rows = [row for x in sw for row in x.get(key, [])]
            s["sweeps"][key] = {ev: float(np.mean([r[ev]["top1"] for r in rows if r[ev]["found"]] or [np.nan]))
                                for ev in EVALUATORS}
            s["sweeps"][key]["people"] = len(sw)
    return s


def _pct(v):
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.1f}"


def markdown(s: dict, meta: dict) -> str:
    lines = [f"Run `{meta['run']}`: {s['people']} people, {s['probes']} probes; faces `{meta['faces']}`; "
             f"{meta['machine']}; {meta['date']}.", "", f"Command: `{meta['command']}`", ""]
    lines += ["| method | evaluator | top-1 PSR | top-5 PSR | verif. PSR | no face | top-1 after JPEG q75 | top-1 after half size | worst tenth top-1 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m, ms in s["methods"].items():
        for ev in EVALUATORS:
            e = ms[ev]
            lines.append(f"| {m} | {ev} | {_pct(e.get('top1_png'))} | {_pct(e.get('top5'))} | {_pct(e.get('verif'))} | "
                         f"{_pct(e.get('noface_png'))} | {_pct(e.get('top1_jpeg75'))} | {_pct(e.get('top1_half'))} | "
                         f"{_pct(e.get('top1_worst_tenth'))} |")
    lines += ["", "| method | face PSNR (dB) | face SSIM | photo PSNR (dB) | photo SSIM | min face PSNR |", "|---|---|---|---|---|---|"]
    for m, ms in s["methods"].items():
        lines.append(f"| {m} | {ms['psnr_face']:.2f} | {ms['ssim_face']:.4f} | {ms['psnr_photo']:.2f} | "
                     f"{ms['ssim_photo']:.4f} | {ms['psnr_face_min']:.2f} |")
    lines += ["", "| enrollment | first (cold) s | warm median s |", "|---|---|---|"]
    for k, v in s["enroll_seconds"].items():
        lines.append(f"| {k} | {v['first']:.2f} | {v['warm_median']:.2f} |")
    if "reuse" in s:
        lines += ["", "| mask reuse | delta correlation | " + " | ".join(f"{ev} top-1 before / after subtraction" for ev in EVALUATORS) + " |",
                  "|---|---|" + "---|" * len(EVALUATORS)]
        for k, v in s["reuse"].items():
            lines.append(f"| {k} | {v['delta_correlation']:.3f} | " + " | ".join(
                f"{_pct(v[f'{ev}_top1_before'])} / {_pct(v[f'{ev}_top1_after'])}" for ev in EVALUATORS) + " |")
        more = {k: v for k, v in s["reuse"].items() if f"{EVALUATORS[0]}_top1_oracle" in v}
        if more:
            lines += ["", "| mask reuse | " + " | ".join(f"{ev} top-1 after the averaged estimate / the exact mask"
                                                       for ev in EVALUATORS) + " |", "|---|" + "---|" * len(EVALUATORS)]
            for k, v in more.items():
                lines.append(f"| {k} | " + " | ".join(f"{_pct(v.get(f'{ev}_top1_averaged'))} / {_pct(v[f'{ev}_top1_oracle'])}"
                                                      for ev in EVALUATORS) + " |")
        secs = {k: v["seconds_per_photo"] for k, v in s["reuse"].items() if "seconds_per_photo" in v}
        if secs:
            lines += ["", "Apply time per photo, detection included (median over people): " + ", ".join(
                f"{k} {v:.2f} s" for k, v in secs.items()) + "."]
    if "edge_correlation" in s:
        lines += ["", f"Correlation of |delta| with the selfie's high-pass edge map: {s['edge_correlation']:.3f}."]
    if "sweeps" in s:
        lines += ["", "| sweep | people | " + " | ".join(f"{ev} top-1" for ev in EVALUATORS) + " |", "|---|---|" + "---|" * len(EVALUATORS)]
        for k, v in s["sweeps"].items():
            lines.append(f"| {k} | {v['people']} | " + " | ".join(_pct(v[ev]) for ev in EVALUATORS) + " |")
    if "timing" in meta:
        t = meta["timing"]
        lines += ["", f"Apply cost over detection on ~1 MP photos: median {t['apply_added_ms_per_face_median']:.1f} ms "
                      f"per face (max {t['apply_added_ms_per_face_max']:.1f}) over {t['photos']} photos."]
    return "\n".join(lines) + "\n"


def plots(s: dict, out: Path) -> None:
    """``main.png`` (top-1 PSR per method and evaluator, PNG and after JPEG q75) and, when the
    run has sweeps, ``sweeps.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if s.get("methods"):
        names = list(s["methods"])
        fig, axes = plt.subplots(1, 2, figsize=(16, 4.5), sharey=True)
        width = 0.8 / len(EVALUATORS)
        for ax, cond, title in zip(axes, ("png", "jpeg75"), ("saved as PNG", "after a JPEG q75 re-save")):
            for k, ev in enumerate(EVALUATORS):
                vals = [s["methods"][m][ev].get(f"top1_{cond}") for m in names]
                ax.bar(np.arange(len(names)) + (k - (len(EVALUATORS) - 1) / 2) * width,
                       [100 * v if v is not None else np.nan for v in vals], width, label=ev)  # no bar: not measured
            ax.axhline(70, color="grey", lw=0.8, ls="--")
            ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
            ax.set_title(f"top-1 PSR, {title} ({s['people']} people, {s['probes']} probes)")
            ax.set_ylim(0, 100)
            ax.grid(axis="y", alpha=0.3)
        axes[0].set_ylabel("% of probes protected")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "main.png", dpi=90)
        plt.close(fig)
    if "sweeps" not in s:
        return
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for ax, sweep in zip(axes, SWEEPS):
        keys = [k for k in s["sweeps"] if k.startswith(sweep + "=")]
        labels = [k.split("=", 1)[1] for k in keys]
        for ev in EVALUATORS:
            ax.plot(range(len(keys)), [100 * s["sweeps"][k][ev] for k in keys], marker="o", label=ev)
        ax.set_xticks(range(len(keys)), labels, rotation=20 if sweep == "ablation" else 0)
        ax.set_title(f"top-1 PSR vs {sweep}")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "sweeps.png", dpi=90)


# ----------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default=str(SHARED_FACES / "lfw"))
    ap.add_argument("--people", type=int, default=100, help="people to enroll (0 = all with >= 2 photos)")
    ap.add_argument("--start", type=int, default=0, help="skip this many people first (a held-out slice)")
    ap.add_argument("--quick", action="store_true", help="CI mode: 20 people, medium ensemble + noise baseline, asserts")
    ap.add_argument("--sweep-people", type=int, default=30)
    ap.add_argument("--no-sweeps", action="store_true")
    ap.add_argument("--sweeps-only", action="store_true",
                    help="run only the sweeps, on the first --sweep-people people (shardable, resumable)")
    ap.add_argument("--shard", default="1/1", help="i/n: this process runs every n-th person from i")
    ap.add_argument("--resume", action="store_true", help="skip people already in this shard's JSON")
    ap.add_argument("--report", action="store_true", help="merge all shards of the run and write the report")
    ap.add_argument("--run", default=None, help="run name (default from the faces folder and mode)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse-only", action="store_true",
                    help="only the mask-reuse study (medium, both surrogates), per person (shardable, resumable)")
    ap.add_argument("--reuse-settings", default=",".join(REUSE_SETTINGS),
                    help="apply settings of the mask-reuse study: N = refine N steps, Ns = with the "
                         "strip-resistant loss (default %(default)s)")
    args = ap.parse_args(argv)
    args.reuse_settings = [k.strip() for k in args.reuse_settings.split(",") if k.strip()]
    for k in args.reuse_settings:
        try:
            reuse_setting(k)
        except ValueError:
            ap.error(f"--reuse-settings: {k!r} is not N or Ns")
    if args.quick:
        args.people = 20
        args.no_sweeps = True
    args.variants = [("medium", "both")] if args.quick else [
        ("medium", "both"), ("medium", "dlib-resnet"), ("medium", "mobilefacenet"), ("high", "both")]
    faces = Path(args.faces)
    run = args.run or f"{faces.name}-{'quick' if args.quick else 'reuse' if args.reuse_only else 'full'}"
    out = RESULTS / "cloak" / run
    out.mkdir(parents=True, exist_ok=True)
    meta = {"run": run, "faces": str(faces), "machine": f"{platform.node()} ({platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads)", "date": datetime.date.today().isoformat(),
            "command": " ".join(["python", "benchmarks/cloak.py"] + (argv or sys.argv[1:]))}
    threads = configure_threads()
    meta["machine"] = f"{platform.node()}, {threads} torch thread(s)"

    if args.report:
        records, metas = [], []
        for f in sorted(out.glob("shard-*.json")) + sorted(out.glob("sweeps-*.json")) + sorted(out.glob("reuse-*.json")):
            d = json.loads(f.read_text())
            records += d["people"]
            metas.append(d["meta"])
        if metas:  # the report describes the runs that made the shards, not this merge
            meta.update(faces=metas[0]["faces"], machine=metas[0]["machine"],
                        date=", ".join(sorted({m["date"] for m in metas})),
                        command="; ".join(m["command"] for m in metas))
        s = summarise(records)
        tfile = out / "timing.json"
        if tfile.exists():
            meta["timing"] = json.loads(tfile.read_text())
        (out / "report.json").write_text(json.dumps({"meta": meta, "summary": s}, indent=1))
        (out / "report.md").write_text(markdown(s, meta))
        plots(s, out)
        print(markdown(s, meta))
        return 0

    entries = load_faceset(faces)
    ids = np.array([e["identity"] for e in entries])
    gallery, n_faces = gallery_embeddings(entries, RESULTS / "cache")
    plan = plan_people(entries, n_faces, args.people, args.start)
    i, n = (int(v) for v in args.shard.split("/"))
    mine = plan[i - 1::n]
    sweep_ids = {p["identity"] for p in plan[: args.sweep_people]}
    kind = "sweeps" if args.sweeps_only else "reuse" if args.reuse_only else "shard"
    if args.sweeps_only:
        mine = plan[: args.sweep_people][i - 1::n]
    shard_file = out / f"{kind}-{i}-of-{n}.json"
    done = json.loads(shard_file.read_text())["people"] if (args.resume and shard_file.exists()) else []
    have = {r["identity"] for r in done}
    for p in tqdm(mine, desc=f"people (shard {args.shard})", file=sys.stderr):
        if p["identity"] in have:
            continue
        if args.sweeps_only:
            done.append({"identity": p["identity"], "sweeps": run_sweeps(p, entries, ids, gallery, args)})
            shard_file.write_text(json.dumps({"meta": meta, "people": done}))
            continue
        if args.reuse_only:
            done.append(run_reuse(p, entries, ids, gallery, args))
            shard_file.write_text(json.dumps({"meta": meta, "people": done}))
            continue
        rec = run_person(p, entries, ids, gallery, args, out / "images")
        if not args.no_sweeps and p["identity"] in sweep_ids:
            rec["sweeps"] = run_sweeps(p, entries, ids, gallery, args)
        done.append(rec)
        shard_file.write_text(json.dumps({"meta": meta, "people": done}))
    if args.sweeps_only:
        return 0
    if args.reuse_only:
        print(markdown(summarise(done), meta))
        return 0
    if i == 1 and not args.quick:
        (out / "timing.json").write_text(json.dumps(timing(args)))
    s = summarise(done)
    md = markdown(s, meta)
    print(md)
    if args.quick:
        (out / "report.md").write_text(md)
        (out / "report.json").write_text(json.dumps({"meta": meta, "summary": s}, indent=1))
        return quick_checks(s)
    return 0


def quick_checks(s: dict) -> int:
    """The CI bar: ensemble top-1 PSR >= 50% on every evaluator, >= 20 points above uniform noise,
    face-region PSNR >= 28 dB."""
    ok = True
    m, base = s["methods"]["medium/both"], s["methods"]["baseline-noise"]
    for ev in EVALUATORS:
        psr, b = m[ev]["top1_png"], base[ev]["top1_png"]
        good = psr is not None and psr >= 0.5 and b is not None and psr - b >= 0.2
        print(f"{'ok  ' if good else 'FAIL'} {ev}: top-1 PSR {_pct(psr)}% (noise baseline {_pct(b)}%)")
        ok &= good
    good = m["psnr_face"] >= 28
    print(f"{'ok  ' if good else 'FAIL'} face-region PSNR {m['psnr_face']:.2f} dB (>= 28)")
    return 0 if ok and good else 1


if __name__ == "__main__":
    sys.exit(main())
