"""The report of the disguise benchmark (``disguise.py``): from the per-probe records to the tables.

``summarise`` groups the runs by (emotion, target mode, row) and counts, per group: dodging top-1
and impersonation per judge (an error or a judge finding no face counts as a failure), expression
success three ways over the eligible probes, joint success, face-region quality and time;
``projection_vs_sum`` pairs the ``both`` (GradVac) and ``sum`` rows' joint success per probe
(exact McNemar test). ``summarise_tuning`` / ``choose_weight`` do the same for ``--tune``'s grid on
the tuning split. Every rate is kept as counts (k of n) so that shards merge exactly.
"""

from __future__ import annotations

import statistics
from math import comb

import numpy as np

from faceprot.disguise.measure import EMOTION_RULES
from faceprot.evaluators import role_of

# ------------------------------------------------------------------------------------------------
# One run's outcomes
# ------------------------------------------------------------------------------------------------


def dodged(run: dict, judge: str) -> bool:
    """Top-1 dodged by this judge: it found a face and none of the person's photos is nearest."""
    v = run.get("identity", {}).get(judge)
    return bool(v and v["found"] and v["top1"])


def impersonated(run: dict, judge: str) -> bool:
    v = run.get("identity", {}).get(judge)
    return bool(v and v["found"] and (v["target_top1"] or v["target_verified"]))


def shows(run: dict, model: str, emotion: str) -> bool:
    """The expression model (or "heldout_warp_jpeg75") calls the output's face the emotion."""
    r = run.get("expression", {}).get(model)
    return bool(r and r["found"] and r["top"] == emotion)


def measurable(emotion: str) -> bool:
    rule = EMOTION_RULES.get(emotion)
    return bool(rule and rule.supported)


def landmark_passed(run: dict) -> bool:
    return bool(run.get("landmark", {}).get("passed"))


def joint(run: dict, judges) -> bool:
    """Dodged top-1 on every judge AND the landmark measure passes (its emotion must be measurable)."""
    return all(dodged(run, j) for j in judges) and landmark_passed(run)


def eligible(rec: dict, emotion: str, model: str = "expression") -> bool:
    """The model read the clean face and did not already call it the emotion."""
    top = rec["clean"]["top"].get(model)
    return top is not None and top != emotion


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (binomial, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


# ------------------------------------------------------------------------------------------------
# Acceptance
# ------------------------------------------------------------------------------------------------


def _key(run: dict) -> tuple:
    return run["emotion"], run["target"], run["row"]


def _group(pairs: list[tuple[dict, dict]], judges) -> dict:
    """The counts of one (emotion, target, row) group; ``pairs`` are (probe record, run)."""
    runs = [r for _, r in pairs]
    ok = [r for r in runs if "error" not in r]
    emotion, target, row = _key(runs[0])
    first = ok[0] if ok else {}
    surrogates = first.get("surrogates")
    g = {"emotion": emotion, "target": target, "row": row, "surrogates": surrogates,
         "projection": first.get("projection") if first.get("warp") else "-",  # no warp: nothing to project
         "identity_weight": first.get("identity_weight"), "probes": len(runs), "errors": len(runs) - len(ok), "identity": {}}
    for j in judges:
        found = [r for r in ok if r["identity"][j]["found"]]
        g["identity"][j] = {"role": role_of(j, surrogates or ())[0], "dodged": sum(dodged(r, j) for r in runs),
                            "no_face": len(runs) - len(found)}
        if target == "next":
            g["identity"][j] |= {"impersonated": sum(impersonated(r, j) for r in runs),
                                 "target_top1": sum(bool(r["identity"][j].get("target_top1")) for r in found),
                                 "target_verified": sum(bool(r["identity"][j].get("target_verified")) for r in found)}
    elig = [(rec, r) for rec, r in pairs if eligible(rec, emotion)]
    e = {"eligible": len(elig), "expression": sum(shows(r, "expression", emotion) for _, r in elig),
         "no_face": sum(not r.get("expression", {}).get("expression", {}).get("found") for _, r in elig)}
    if any(rec["clean"]["top"].get("expression-heldout") for rec, _ in pairs):
        held = [(rec, r) for rec, r in elig if eligible(rec, emotion, "expression-heldout")]
        e |= {"heldout_eligible": len(held), "heldout": sum(shows(r, "expression-heldout", emotion) for _, r in held),
              "heldout_warp_jpeg75": sum(shows(r, "heldout_warp_jpeg75", emotion) for _, r in held),
              "heldout_warp": sum(shows(r, "heldout_warp", emotion) for _, r in held)}
        templ = [(rec, r) for rec, r in held if "template" in r]
        if templ:  # the optimised warp against the template scaled to its mean move, same probes
            e["template"] = {"probes": len(templ),
                             "optimised_heldout": sum(shows(r, "heldout_warp", emotion) for _, r in templ),
                             "template_heldout": sum(shows(r["template"], "expression-heldout", emotion) for _, r in templ),
                             "optimised_heldout_jpeg75": sum(shows(r, "heldout_warp_jpeg75", emotion) for _, r in templ),
                             "template_heldout_jpeg75": sum(shows(r["template"], "heldout_jpeg75", emotion) for _, r in templ),
                             "template_landmark": sum(bool(r["template"]["landmark"].get("passed")) for _, r in templ),
                             "template_expression": sum(shows(r["template"], "expression", emotion) for _, r in templ)}
    if measurable(emotion):
        e["landmark"] = sum(landmark_passed(r) for _, r in elig)
        g["joint"] = sum(joint(r, judges) for _, r in elig)
    else:
        e["landmark"] = g["joint"] = None
        g["not_measurable"] = EMOTION_RULES[emotion].why if emotion in EMOTION_RULES else "no landmark rule"
    g["expression"] = e
    if ok:
        psnr, secs = [r["quality"]["psnr_face"] for r in ok], [r["seconds"] for r in ok]
        g |= {"psnr_face": float(np.mean(psnr)), "psnr_face_min": float(np.min(psnr)),
              "ssim_face": float(np.mean([r["quality"]["ssim_face"] for r in ok])),
              "seconds_median": statistics.median(secs), "seconds_mean": float(np.mean(secs)),
              "max_move_iod": max(r["max_move_iod"] for r in ok)}
    return g


def projection_vs_sum(records: list[dict], judges) -> list[dict]:
    """Joint success of the ``both`` (GradVac) and ``sum`` rows on the same eligible probes, per
    emotion and target mode: the difference and the exact McNemar p-value."""
    out = []
    keys = sorted({(r["emotion"], r["target"]) for rec in records for r in rec["runs"] if r["row"] == "both"})
    for emotion, target in keys:
        if not measurable(emotion):
            continue
        a, b, weights = [], [], set()
        for rec in records:
            runs = {r["row"]: r for r in rec["runs"] if (r["emotion"], r["target"]) == (emotion, target)}
            if "both" in runs and "sum" in runs:
                weights.add(runs["sum"]["identity_weight"])
                if eligible(rec, emotion):
                    a.append(joint(runs["both"], judges))
                    b.append(joint(runs["sum"], judges))
        if not weights:
            continue
        if len(weights) > 1:
            raise SystemExit(f"the sum rows of {emotion}/{target} used different identity weights {sorted(weights)}: "
                             "the shards ran with different tunings; rerun them with one")
        weight = weights.pop()
        only_a = sum(x and not y for x, y in zip(a, b))
        only_b = sum(y and not x for x, y in zip(a, b))
        out.append({"emotion": emotion, "target": target, "probes": len(a), "gradvac": sum(a), "sum": sum(b),
                    "sum_identity_weight": weight, "only_gradvac": only_a, "only_sum": only_b,
                    "difference": (sum(a) - sum(b)) / len(a) if a else None, "p_mcnemar": mcnemar_exact(only_a, only_b)})
    return out


def summarise(records: list[dict], judges) -> dict:
    groups: dict[tuple, list] = {}
    for rec in records:
        for r in rec["runs"]:
            groups.setdefault(_key(r), []).append((rec, r))
    return {"people": len(records), "judges": list(judges),
            "groups": [_group(v, judges) for v in groups.values()],
            "projection_vs_sum": projection_vs_sum(records, judges)}


def _frac(k, n) -> str:
    if k is None or not n:
        return "-"
    return f"{k}/{n} ({100 * k / n:.1f}%)"


def markdown(s: dict, meta: dict) -> str:
    judges = s["judges"]
    lines = [f"Run `{meta['run']}`: {s['people']} people ({meta.get('split', '')}); faces `{meta['faces']}`; "
             f"{meta['machine']}; {meta['date']}; commit {meta['commit']}.", "", f"Command: `{meta['command']}`", ""]
    if meta.get("sum_weight"):
        w = meta["sum_weight"]
        lines += [f"Naive sum: identity_weight {w['identity_weight']:g} ({w['from']}).", ""]
    if meta.get("heldout") and meta["heldout"] != "available":
        lines += [f"Held-out expression model: {meta['heldout']}; its columns are empty.", ""]
    lines += ["Identity, top-1 PSR over the gallery (a judge finding no face counts as not protected); "
              "impersonation: the target is top-1 or verifies at FAR 1e-3.", "",
              "| emotion | target | row | surrogates | judge | role | dodging top-1 PSR | no face | impersonation |",
              "|---|---|---|---|---|---|---|---|---|"]
    for g in s["groups"]:
        for j in judges:
            v = g["identity"][j]
            lines.append(f"| {g['emotion']} | {g['target']} | {g['row']} | {'+'.join(g['surrogates'] or ['-'])} | {j} | "
                         f"{v['role']} | {_frac(v['dodged'], g['probes'])} | {_frac(v['no_face'], g['probes'])} | "
                         f"{_frac(v.get('impersonated'), g['probes'])} |")
    lines += ["", "Expression success over the probes whose clean face the white-box model does not call the emotion "
                  "(held-out columns: nor the held-out model); joint: dodged top-1 on every judge and the landmark "
                  "measure passes, same probes.", "",
              "| emotion | target | row | eligible | `expression` on output | held-out on output | "
              "held-out on warp only, JPEG q75 | landmark measure | joint success |",
              "|---|---|---|---|---|---|---|---|---|"]
    for g in s["groups"]:
        e = g["expression"]
        n = e["eligible"]
        lm = _frac(e["landmark"], n) if e["landmark"] is not None else "not measurable"
        lines.append(f"| {g['emotion']} | {g['target']} | {g['row']} | {n} | {_frac(e['expression'], n)} | "
                     f"{_frac(e.get('heldout'), e.get('heldout_eligible'))} | "
                     f"{_frac(e.get('heldout_warp_jpeg75'), e.get('heldout_eligible'))} | {lm} | "
                     f"{_frac(g['joint'], n) if g['joint'] is not None else 'not measurable'} |")
    lines += ["", "| emotion | target | row | projection | identity weight | face PSNR (dB) | min face PSNR | face SSIM | "
                  "s/photo (median) | s/photo (mean) | errors |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in s["groups"]:
        if "psnr_face" not in g:
            lines.append(f"| {g['emotion']} | {g['target']} | {g['row']} | - | - | - | - | - | - | - | {g['errors']} |")
            continue
        lines.append(f"| {g['emotion']} | {g['target']} | {g['row']} | {g['projection']} | {g['identity_weight']:g} | "
                     f"{g['psnr_face']:.2f} | {g['psnr_face_min']:.2f} | {g['ssim_face']:.4f} | "
                     f"{g['seconds_median']:.2f} | {g['seconds_mean']:.2f} | {g['errors']} |")
    templ = [g for g in s["groups"] if g["expression"].get("template")]
    if templ:
        lines += ["", "The optimised warp against the loss's template scaled to the optimised warp's mean landmark "
                      "move (same limits, no additive part), on the probes neither expression model calls the "
                      "emotion when clean: the held-out model on each warp-only photo, as saved and after JPEG q75.", "",
                  "| emotion | target | probes | held-out: optimised warp | held-out: template | difference | "
                  "after JPEG q75: optimised | after JPEG q75: template | `expression`: template | landmark: template |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for g in templ:
            t = g["expression"]["template"]
            n = t["probes"]
            diff = 100 * (t["optimised_heldout"] - t["template_heldout"]) / n if n else 0
            lines.append(f"| {g['emotion']} | {g['target']} | {n} | {_frac(t['optimised_heldout'], n)} | "
                         f"{_frac(t['template_heldout'], n)} | {diff:+.1f} pts | {_frac(t['optimised_heldout_jpeg75'], n)} | "
                         f"{_frac(t['template_heldout_jpeg75'], n)} | {_frac(t['template_expression'], n)} | "
                         f"{_frac(t['template_landmark'], n) if measurable(g['emotion']) else 'not measurable'} |")
    if s["projection_vs_sum"]:
        lines += ["", "GradVac (`both`) against the naive sum, joint success on the same probes (exact McNemar test "
                      "on the discordant pairs).", "",
                  "| emotion | target | probes | GradVac | sum | sum weight | difference | GradVac only | sum only "
                  "| McNemar p |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for c in s["projection_vs_sum"]:
            diff = "-" if c["difference"] is None else f"{100 * c['difference']:+.1f} pts"
            lines.append(f"| {c['emotion']} | {c['target']} | {c['probes']} | {_frac(c['gradvac'], c['probes'])} | "
                         f"{_frac(c['sum'], c['probes'])} | {c['sum_identity_weight']:g} | {diff} | "
                         f"{c['only_gradvac']} | {c['only_sum']} | {c['p_mcnemar']:.3g} |")
    unmeasured = sorted({g["emotion"] for g in s["groups"] if g.get("not_measurable")})
    for emotion in unmeasured:
        why = next(g["not_measurable"] for g in s["groups"] if g["emotion"] == emotion and g.get("not_measurable"))
        lines += ["", f"Landmark measure and joint success: {emotion} is not measurable ({why})."]
    if meta.get("no_usable_photo"):
        lines += ["", f"No usable photo (face and landmarks), not probed: {', '.join(meta['no_usable_photo'])}."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# Tuning: the naive sum's identity_weight
# ------------------------------------------------------------------------------------------------


def summarise_tuning(records: list[dict]) -> dict:
    """Per grid point (and GradVac's reference): joint success on the surrogates (white-box) and the
    landmark measure over the eligible probes, and its parts."""
    groups: dict[tuple, list] = {}
    judges = None
    for rec in records:
        for r in rec["runs"]:
            if "error" not in r:
                judges = judges or list(r["identity"])
            groups.setdefault((r["projection"], r["identity_weight"]), []).append((rec, r))
    judges = judges or []
    rows = []
    for (projection, weight), pairs in sorted(groups.items(), key=lambda kv: kv[0]):
        elig = [(rec, r) for rec, r in pairs if eligible(rec, "happy")]
        ok = [r for _, r in pairs if "error" not in r]
        rows.append({"projection": projection, "identity_weight": weight, "probes": len(pairs), "eligible": len(elig),
                     "joint": sum(joint(r, judges) for _, r in elig),
                     "landmark": sum(landmark_passed(r) for _, r in elig),
                     "expression": sum(shows(r, "expression", "happy") for _, r in elig),
                     **{f"dodged_{j}": sum(dodged(r, j) for _, r in pairs) for j in judges},
                     "psnr_face": float(np.mean([r["quality"]["psnr_face"] for r in ok])) if ok else None,
                     "seconds_median": statistics.median(r["seconds"] for r in ok) if ok else None})
    return {"people": len(records), "judges": judges, "grid": rows}


def choose_weight(s: dict) -> float:
    """The naive sum's weight with the highest joint success on the tuning split (ties: the smaller
    weight, the one that leaves the expression more room)."""
    cands = [g for g in s["grid"] if g["projection"] == "sum" and g["eligible"]]
    if not cands:
        raise SystemExit("the tuning holds no eligible probe for the sum: nothing to choose from")
    best = max(cands, key=lambda g: (g["joint"] / g["eligible"], -g["identity_weight"]))
    return float(best["identity_weight"])


def tuning_markdown(s: dict, chosen: float, meta: dict) -> str:
    lines = [f"Run `{meta['run']}`: the naive sum's identity_weight on the tuning split, {s['people']} people; "
             f"{meta['machine']}; {meta['date']}; commit {meta['commit']}.", "", f"Command: `{meta['command']}`", "",
             f"Joint success: dodged top-1 on {' and '.join(s['judges'])} (the surrogates) and the landmark measure "
             "passes, over the probes the white-box model does not already call happy. dlib-cpp and the held-out "
             "model are not read here.", "",
             "| projection | identity weight | eligible | joint success | landmark | `expression` | "
             + " | ".join(f"dodged {j}" for j in s["judges"]) + " | face PSNR | s/photo |",
             "|---|---|---|---|---|---|" + "---|" * len(s["judges"]) + "---|---|"]
    for g in s["grid"]:
        lines.append(f"| {g['projection']} | {g['identity_weight']:g} | {g['eligible']} | {_frac(g['joint'], g['eligible'])} | "
                     f"{_frac(g['landmark'], g['eligible'])} | {_frac(g['expression'], g['eligible'])} | "
                     + " | ".join(_frac(g[f'dodged_{j}'], g['probes']) for j in s["judges"])
                     + f" | {g['psnr_face']:.2f} | {g['seconds_median']:.2f} |")
    lines += ["", f"Chosen: identity_weight {chosen:g} (highest joint success; ties to the smaller weight)."]
    return "\n".join(lines) + "\n"


def quick_checks(s: dict) -> int:
    """The CI bar of ``--quick`` (happy, dodging, the ``both`` row, 8 people): every probe disguised
    and judged, the warp within its 0.12 IOD cap, and regression floors under what the first run
    measured (2026-12-05, 2-core VM: dlib-resnet dodged 6/8, landmark measure 5/6 eligible):
    white-box dlib-resnet dodging top-1 >= 50% and the landmark measure >= 50% of eligible probes."""
    g = next(g for g in s["groups"] if (g["emotion"], g["target"], g["row"]) == ("happy", "none", "both"))
    e = g["expression"]
    checks = [
        (g["errors"] == 0, f"{g['probes'] - g['errors']}/{g['probes']} probes disguised"),
        (g.get("max_move_iod", 1) <= 0.12 + 1e-6,
         f"largest landmark move {g.get('max_move_iod', float('nan')):.3f} IOD (<= 0.12)"),
        (g["identity"]["dlib-resnet"]["dodged"] >= 0.5 * g["probes"],
         f"dlib-resnet dodging top-1 {_frac(g['identity']['dlib-resnet']['dodged'], g['probes'])} (>= 50%)"),
        (e["eligible"] > 0 and e["landmark"] >= 0.5 * e["eligible"],
         f"landmark measure {_frac(e['landmark'], e['eligible'])} of eligible probes (>= 50%)"),
    ]
    for ok, what in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    return 0 if all(ok for ok, _ in checks) else 1
