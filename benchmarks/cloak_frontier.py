"""The frontier mode of the cloak benchmark (``cloak.py --frontier``, issue 16 item 3): top-1 PSR
against visibility, per method, at several budget scales.

Per person (the protocol of ``cloak.py``: enroll from the first photo, the other photos are
probes, each searched among all other photos of the folder by each evaluator) and per method and
scale ``s``, one enrollment per surrogate setting; each probe is protected as the app does it
(``refine`` 10) and with the universal mask alone (``refine`` 0), saved as a PNG, read back, and
measured: face PSNR and SSIM, CIEDE2000 over the face and the eye region (mean and 95th
percentile of the photo, :func:`faceprot.visibility.visibility`), and each evaluator's verdict.

Methods (``METHODS``):

* ``v1``: today's method, the paper's RGB box: the ``paper`` preset (medium) with eps, eps_high
  and alpha times ``s`` (8s/255, 16s/255 on stickers and high-pass, step 2s/255);
* ``v2``: the perceptual budget (:mod:`faceprot.cloak.perceptual`) with its luminance and eye
  budgets times ``s`` (luma_flat 3s/255, luma_texture 10s/255, eye_luma 2s/255, eye_chroma
  0.5s/255; chroma_ratio stays 0.2);
* ``de2000``: a CIEDE2000-bounded baseline after PerC's colour-distance bound (Zhao et al. 2020),
  made simply: v1's optimisation and refinement at scale ``s``, then on the output photo every
  pixel whose CIEDE2000 to the clean pixel exceeds ``3 s`` is moved back along its own RGB change
  until it is within (bisection, then rounding towards the clean value; any pixel still over is
  reset). The bound is enforced on the output photo exactly; the optimiser does not know it (PerC
  optimises with it; this is the post-hoc projection only).

Surrogate settings: ``both`` (dlib-resnet + MobileFaceNet, scored by every evaluator) and, with
``--leave-one-out``, the black-box rows: ``dlib-resnet`` only, scored on MobileFaceNet alone, and
``mobilefacenet`` only, scored on dlib-cpp alone (``LEAVE_ONE_OUT``).

The report (``summarise_frontier``, ``frontier_markdown``, ``frontier_plot``) gives the table per
(method, scale, setting, refine), top-1 PSR interpolated along each frontier at two face PSNRs,
and ``frontier.png``: PSR against face PSNR and against the eye region's mean CIEDE2000.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cloak_protocol import EVALUATORS, SETTINGS, _embed, degrade, save_and_reread, score_embedding
from faceprot.cloak.apply import apply_mask
from faceprot.cloak.enroll import PRESETS, enroll, perceptual_preset
from faceprot.cloak.perceptual import PerceptualBudget
from faceprot.errors import NoFaceError
from faceprot.faces import find_faces
from faceprot.io import load_image
from faceprot.visibility import ciede2000, visibility

METHODS = ("v1", "v2", "de2000")
SCALES = (0.5, 0.75, 1.0, 1.5)
REFINES = (10, 0)
#: the leave-one-out settings: surrogate -> the evaluators that score it (issue 16 item 2)
LEAVE_ONE_OUT = {"dlib-resnet": ["mobilefacenet"], "mobilefacenet": ["dlib-cpp"]}
#: de2000's per-pixel CIEDE2000 bound at scale 1 (about "noticeable at a glance" on flat areas,
#: faceprot.visibility's rule of thumb)
DE_BOUND = 3.0
#: the face PSNRs (dB) at which the report interpolates each frontier (issue 16: two values in 32-38)
COMPARE_AT = (34.0, 36.0)
#: v2's budgets, scaled by the frontier's scale (the other PerceptualBudget fields are not)
V2_SCALED = ("luma_flat", "luma_texture", "eye_luma", "eye_chroma")
#: people 0-99 of LFW are issue 16's acceptance split; the frontier is tuned on 100-199
TUNING_START = 100


def method_settings(method: str, scale: float, v2: dict | None = None) -> tuple[dict, float | None]:
    """(enroll keyword arguments, CIEDE2000 bound or None) of one method at one budget scale.

    ``v2``: :class:`PerceptualBudget` fields of v2 at scale 1 in place of its defaults (the budgets
    among them are scaled by ``scale`` like the defaults; a tuning variant)."""
    box = PRESETS["paper"]
    v1 = dict(preset="paper", eps=box["eps"] * scale, eps_high=box["eps_high"] * scale, alpha=box["alpha"] * scale)
    if method == "v1":
        return v1, None
    if method == "de2000":
        return v1, DE_BOUND * scale
    if method == "v2":
        rest = {k: v for k, v in (v2 or {}).items() if k not in V2_SCALED}
        return dict(preset="medium", **rest, **perceptual_preset(scale, base=PerceptualBudget(**(v2 or {})))), None
    raise ValueError(f"unknown frontier method {method!r}; choose from {', '.join(METHODS)}")


def clip_ciede2000(clean: np.ndarray, prot: np.ndarray, bound: float, steps: int = 12) -> np.ndarray:
    """``prot`` with every pixel's CIEDE2000 to ``clean`` brought to at most ``bound``.

    A pixel over the bound is moved back along its own change: clean + t (prot - clean), with the
    largest t in [0, 1] found by bisection whose colour is within the bound, rounded towards the
    clean value; a pixel that rounding still leaves over the bound is reset to the clean value.

    Args:
        clean, prot: (H, W, 3) uint8 RGB, the same photo before and after protection.
    Returns:
        (H, W, 3) uint8 with ``ciede2000(clean, out) <= bound`` at every pixel.
    """
    from skimage.color import deltaE_ciede2000, rgb2lab

    out = prot.copy()
    over = ciede2000(clean, prot) > bound
    if not over.any():
        return out
    c = clean[over].astype(np.float64)[:, None]  # (N, 1, 3)
    d = prot[over].astype(np.float64)[:, None] - c
    lab_c = rgb2lab(c / 255)
    lo, hi = np.zeros((len(c), 1, 1)), np.ones((len(c), 1, 1))
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok = deltaE_ciede2000(lab_c, rgb2lab((c + mid * d) / 255), channel_axis=-1)[..., None] <= bound
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    moved = (c + np.trunc(lo * d)).astype(np.uint8)  # truncation: never further from clean than t
    still = deltaE_ciede2000(lab_c, rgb2lab(moved / 255), channel_axis=-1) > bound
    moved[still] = c[still].astype(np.uint8)
    out[over] = moved[:, 0]
    return out


def scored_by(setting: str) -> list[str]:
    """The evaluators that score a surrogate setting: all of them for ``both``, else the held-out one."""
    return EVALUATORS if setting == "both" else LEAVE_ONE_OUT[setting]


def run_frontier(p: dict, entries, ids, gallery, args, img_dir: Path) -> dict:
    """One person through every (method, scale, setting, refine) of the frontier.

    ``args`` gives ``methods``, ``scales``, ``settings``, ``refines``, ``seed`` and ``overrides``
    (extra enroll / CloakConfig keywords for every enrollment: a transfer technique, or a tiny
    smoke setting). v1 and de2000 share one enrollment and one refinement per scale."""
    selfie = load_image(entries[p["selfie"]]["path"]).rgb
    probes = []
    for i in p["probes"]:
        rgb = load_image(entries[i]["path"]).rgb
        try:
            probes.append((i, rgb, find_faces(rgb)[0]))
        except NoFaceError:
            continue
    slug = p["identity"].replace("/", "_")
    rec = {"identity": p["identity"], "selfie": entries[p["selfie"]]["file"],
           "probes": [entries[i]["file"] for i, _, _ in probes], "frontier": []}
    masks: dict[str, tuple] = {}
    applied: dict[tuple, np.ndarray] = {}
    for method in args.methods:
        for scale in args.scales:
            kw, bound = method_settings(method, scale, getattr(args, "v2", None))
            for setting in args.settings:
                key = repr((sorted(kw.items()), setting))
                if key not in masks:
                    t = time.perf_counter()
                    masks[key] = (enroll(selfie, seed=args.seed, surrogates=SETTINGS[setting],
                                         **{**kw, **args.overrides}).mask,
                                  time.perf_counter() - t)
                mask, seconds = masks[key]
                for refine in args.refines:
                    rows = []
                    for i, clean, face in probes:
                        if (key, refine, i) not in applied:
                            applied[(key, refine, i)] = apply_mask(clean, mask, faces=[face], refine=refine,
                                                                   seed=args.seed).picture.rgb
                        prot = applied[(key, refine, i)]
                        if bound is not None:
                            prot = clip_ciede2000(clean, prot, bound)
                        name = f"{method}-{scale:g}-{setting}-r{refine}__{Path(entries[i]['file']).stem}.png"
                        prot = save_and_reread(prot, img_dir / slug / name)
                        jpeg = degrade(prot, "jpeg75")
                        rows.append({"probe": entries[i]["file"], "vis": visibility(clean, prot, face),
                                     "scores": {ev: score_embedding(ev, _embed(ev, prot), i, p["identity"], ids, gallery)
                                                for ev in scored_by(setting)},
                                     "jpeg75": {ev: score_embedding(ev, _embed(ev, jpeg), i, p["identity"], ids, gallery)
                                                for ev in scored_by(setting)}})
                    rec["frontier"].append({"method": method, "scale": scale, "setting": setting, "refine": refine,
                                            "enroll_s": seconds, "rows": rows})
    return rec


VIS_KEYS = ("psnr_face", "ssim_face", "de_face_mean", "de_face_p95", "de_eye_mean", "de_eye_p95")


def by_point(records: list[dict]) -> dict[tuple, list[tuple[str, dict]]]:
    """(method, scale, setting, refine) -> [(identity, frontier entry)] over the records."""
    out: dict[tuple, list] = {}
    for r in records:
        for e in r.get("frontier", []):
            out.setdefault((e["method"], float(e["scale"]), e["setting"], int(e["refine"])), []).append((r["identity"], e))
    return out


def summarise_frontier(records: list[dict]) -> dict:
    """Per (method, scale, setting, refine): probes, mean visibility over probes (the p95 columns
    are the mean of each photo's 95th percentile), and per scoring evaluator top-1 PSR among the
    probes it found a face in, its no-face share and its count."""
    entries = by_point(records)
    groups = {k: [row for _, e in v for row in e["rows"]] for k, v in entries.items()}
    enroll_s = {k: [e["enroll_s"] for _, e in v] for k, v in entries.items()}
    points = []
    for (method, scale, setting, refine), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], -kv[0][3], kv[0][1])):
        if not rows:
            continue
        pt = {"method": method, "scale": scale, "setting": setting, "refine": refine, "probes": len(rows),
              "people": len(enroll_s[(method, scale, setting, refine)]),
              "enroll_s_median": float(np.median(enroll_s[(method, scale, setting, refine)])),
              **{k: float(np.mean([row["vis"][k] for row in rows])) for k in VIS_KEYS}, "top1": {}}
        for ev in scored_by(setting):
            found = [row["scores"][ev]["top1"] for row in rows if row["scores"][ev]["found"]]
            pt["top1"][ev] = {"psr": float(np.mean(found)) if found else None, "found": len(found),
                              "noface": 1 - len(found) / len(rows)}
            jp = [row["jpeg75"][ev]["top1"] for row in rows if "jpeg75" in row and row["jpeg75"][ev]["found"]]
            if jp:  # runs before the JPEG column have none
                pt.setdefault("top1_jpeg75", {})[ev] = float(np.mean(jp))
        points.append(pt)
    people = {r["identity"] for r in records if "frontier" in r}
    return {"people": len(people), "points": points, "compare": compare_at(points)}


def compare_at(points: list[dict], at=COMPARE_AT) -> list[dict]:
    """Top-1 PSR interpolated linearly along each (method, setting, refine, evaluator) frontier at
    the face PSNRs ``at``; None outside the PSNRs measured."""
    lines: dict[tuple, list] = {}
    for pt in points:
        for ev, v in pt["top1"].items():
            if v["psr"] is not None:
                lines.setdefault((pt["method"], pt["setting"], pt["refine"], ev), []).append((pt["psnr_face"], v["psr"]))
    out = []
    for (method, setting, refine, ev), xy in sorted(lines.items()):
        xy.sort()
        x, y = np.array([a for a, _ in xy]), np.array([b for _, b in xy])
        row = {"method": method, "setting": setting, "refine": refine, "evaluator": ev}
        for db in at:
            row[f"{db:g}"] = float(np.interp(db, x, y)) if len(x) >= 2 and x[0] <= db <= x[-1] else None
        out.append(row)
    return out


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def frontier_markdown(s: dict, meta: dict) -> str:
    lines = [f"# Cloak frontier `{meta.get('run', '')}`: {s['people']} people", "",
             f"- command: `{meta.get('command', '')}`", f"- machine: {meta.get('machine', '')}",
             f"- date: {meta.get('date', '')}", f"- commit: {meta.get('commit', '')}",
             f"- people in the records: {s['people']} (planned: {meta.get('people_range', '')})", "",
             "Top-1 PSR (%) per evaluator (- = not scored: leave-one-out rows are scored on the held-out "
             "evaluator only); visibility is the mean over probes (p95: mean of each photo's 95th percentile).", ""]
    for refine in sorted({pt["refine"] for pt in s["points"]}, reverse=True):
        lines += [f"## refine {refine}" + (" (as the app and the CLI apply)" if refine == 10 else
                                          " (the universal mask alone)" if refine == 0 else ""), "",
                  "| method | scale | surrogates | probes | face PSNR | SSIM | dE face mean / p95 | dE eye mean / p95 | "
                  + " | ".join(EVALUATORS) + " |", "|" + "---|" * (8 + len(EVALUATORS))]
        for pt in (q for q in s["points"] if q["refine"] == refine):
            psr = [_pct(pt["top1"][ev]["psr"]) if ev in pt["top1"] else "-" for ev in EVALUATORS]
            lines.append(f"| {pt['method']} | {pt['scale']:g} | {pt['setting']} | {pt['probes']} | {pt['psnr_face']:.2f} | "
                         f"{pt['ssim_face']:.3f} | {pt['de_face_mean']:.2f} / {pt['de_face_p95']:.2f} | "
                         f"{pt['de_eye_mean']:.2f} / {pt['de_eye_p95']:.2f} | " + " | ".join(psr) + " |")
        lines.append("")
        jp = [q for q in s["points"] if q["refine"] == refine and q.get("top1_jpeg75")]
        if jp:
            lines += ["After a JPEG q75 re-save of those outputs, top-1 PSR (%):", "",
                      "| method | scale | surrogates | " + " | ".join(EVALUATORS) + " |", "|" + "---|" * (3 + len(EVALUATORS))]
            lines += [f"| {q['method']} | {q['scale']:g} | {q['setting']} | "
                      + " | ".join(_pct(q["top1_jpeg75"].get(ev)) for ev in EVALUATORS) + " |" for q in jp]
            lines.append("")
    if s["compare"]:
        cols = [k for k in s["compare"][0] if k not in ("method", "setting", "refine", "evaluator")]
        lines += ["## Top-1 PSR (%) interpolated along each frontier at equal face PSNR", "",
                  "| method | surrogates | refine | evaluator | " + " | ".join(f"at {c} dB" for c in cols) + " |",
                  "|" + "---|" * (4 + len(cols))]
        for r in s["compare"]:
            lines.append(f"| {r['method']} | {r['setting']} | {r['refine']} | {r['evaluator']} | "
                         + " | ".join(_pct(r[c]) if r[c] is not None else "outside" for c in cols) + " |")
    return "\n".join(lines)


def frontier_plot(s: dict, path: Path) -> bool:
    """frontier.png: top-1 PSR against face PSNR (left) and the eye region's mean CIEDE2000
    (right), one row per refine, one line per method and evaluator (leave-one-out rows dotted).
    False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    refines = sorted({pt["refine"] for pt in s["points"]}, reverse=True)
    fig, axes = plt.subplots(len(refines), 2, figsize=(13, 4.8 * len(refines)), squeeze=False)
    colours = dict(zip(METHODS, ("tab:red", "tab:blue", "tab:green")))
    markers = dict(zip(EVALUATORS, ("o", "s", "^")))
    for row, refine in zip(axes, refines):
        pts = [q for q in s["points"] if q["refine"] == refine]
        for (method, setting) in sorted({(q["method"], q["setting"]) for q in pts}):
            line = sorted((q for q in pts if (q["method"], q["setting"]) == (method, setting)), key=lambda q: q["scale"])
            for ev in scored_by(setting):
                xs = [(q["psnr_face"], q["de_eye_mean"], q["top1"][ev]["psr"]) for q in line if q["top1"][ev]["psr"] is not None]
                if not xs:
                    continue
                label = f"{method} on {ev}" if setting == "both" else f"{method}, {setting} only -> {ev}"
                style = dict(color=colours.get(method, "k"), marker=markers[ev], ls="-" if setting == "both" else ":")
                for ax, k in zip(row, (0, 1)):
                    ax.plot([x[k] for x in xs], [100 * x[2] for x in xs], label=label, **style)
        for ax, xl in zip(row, ("face PSNR (dB)", "eye region CIEDE2000, mean")):
            ax.set_xlabel(xl)
            ax.set_ylabel("top-1 PSR (%)")
            ax.set_title(f"refine {refine}")
            ax.grid(alpha=0.3)
        row[1].invert_xaxis()  # less visible to the right in both panels
        row[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
