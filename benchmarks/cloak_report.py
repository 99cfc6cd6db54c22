"""The report of the cloak benchmark (``cloak.py``): from the per-person records of the shards to
the figures.

``summarise`` merges records (full, sweeps-only and reuse-only shards alike) into per-method,
per-evaluator rates (top-1 / top-5 / verification PSR, no-face share, after JPEG and half size,
worst tenth of people), image quality, enrollment times, the reuse study and the sweeps;
``markdown`` writes the tables, ``plots`` the figures (``main.png``, ``sweeps.png``), and
``quick_checks`` holds the CI bar of ``--quick``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from cloak_protocol import EVALUATORS
from cloak_sweeps import SWEEPS


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
        if all("vis" in row for row in rows):  # CIEDE2000 (runs before issue 16 have none)
            for q in ("de_face_mean", "de_face_p95", "de_eye_mean", "de_eye_p95"):
                ms[q] = float(np.mean([row["vis"][q] for row in rows]))
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
    vis = {m: ms for m, ms in s["methods"].items() if "de_eye_mean" in ms}
    if vis:
        lines += ["", "| method | CIEDE2000 face mean / p95 | CIEDE2000 eye region mean / p95 |", "|---|---|---|"]
        for m, ms in vis.items():
            lines.append(f"| {m} | {ms['de_face_mean']:.2f} / {ms['de_face_p95']:.2f} | "
                         f"{ms['de_eye_mean']:.2f} / {ms['de_eye_p95']:.2f} |")
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



def quick_checks(s: dict) -> int:
    """The CI bar. high (the strongest cloak v2 preset, as the app applies it): top-1 PSR >= 50% on
    every evaluator and >= 20 points above uniform noise, face-region PSNR >= 28 dB. medium (the
    default): issue 16's visibility limits (face PSNR >= 34 dB, eye-region CIEDE2000 mean <= 2.0
    and p95 <= 5) and >= 20 points above noise on dlib-resnet, the recognizer it attacks most."""
    ok = True

    def check(good: bool, line: str) -> None:
        nonlocal ok
        print(f"{'ok  ' if good else 'FAIL'} {line}")
        ok &= bool(good)

    base = s["methods"]["baseline-noise"]
    high, medium = s["methods"]["high/both"], s["methods"]["medium/both"]
    for ev in EVALUATORS:
        psr, b = high[ev]["top1_png"], base[ev]["top1_png"]
        check(psr is not None and psr >= 0.5 and b is not None and psr - b >= 0.2,
              f"high, {ev}: top-1 PSR {_pct(psr)}% (noise baseline {_pct(b)}%)")
    check(high["psnr_face"] >= 28, f"high: face-region PSNR {high['psnr_face']:.2f} dB (>= 28)")
    psr, b = medium["dlib-resnet"]["top1_png"], base["dlib-resnet"]["top1_png"]
    check(psr is not None and b is not None and psr - b >= 0.2,
          f"medium, dlib-resnet: top-1 PSR {_pct(psr)}% (noise baseline {_pct(b)}%)")
    check(medium["psnr_face"] >= 34, f"medium: face-region PSNR {medium['psnr_face']:.2f} dB (>= 34)")
    check(medium["de_eye_mean"] <= 2.0 and medium["de_eye_p95"] <= 5.0,
          f"medium: eye-region CIEDE2000 mean {medium['de_eye_mean']:.2f} (<= 2.0), p95 {medium['de_eye_p95']:.2f} (<= 5)")
    return 0 if ok else 1

