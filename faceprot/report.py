"""What faceprot hands back to a person, in one place for the app and the command line.

* output naming (``<photo>-protected.png``, clashes made unique) and the zip of several outputs;
* the score table's rows, as numbers and as plain text;
* verdicts and caveats: what "no match" means, when a table is only the best case, which photos
  a recognizer still finds;
* a one-line description of a mask, and of which recognizers this installation has.

Nothing here detects, aligns or optimises: it words results that the pipeline already made.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterable, Sequence

from .evaluators import EVALUATOR_NAMES, Score, available_evaluators
from .recognizers import surrogate_available

PROTECTED_SUFFIX = "-protected.png"
ZIP_NAME = "protected-photos.zip"

SCORE_HEADERS = ["evaluator", "role", "metric", "score", "threshold", "verdict", "note"]


# ------------------------------------------------------------------------------------ naming


def output_names(sources: Sequence[str | Path]) -> list[str]:
    """File names for the protected copies of ``sources``, in order, all distinct.

    ``party.jpg`` -> ``party-protected.png``. Where two sources share a stem (``a.jpg``, ``a.png``)
    the extension joins it (``a-jpg-protected.png``); where they still clash (the same name in two
    folders) a counter follows (``a-protected-2.png``).
    """
    paths = [Path(s) for s in sources]
    stems = [p.stem or "photo" for p in paths]
    names, taken = [], set()
    for p, stem in zip(paths, stems):
        if stems.count(stem) > 1 and p.suffix:
            stem = f"{stem}-{p.suffix.lstrip('.').lower()}"
        name, n = f"{stem}{PROTECTED_SUFFIX}", 1
        while name in taken:
            n += 1
            name = f"{stem}{PROTECTED_SUFFIX[:-4]}-{n}.png"
        taken.add(name)
        names.append(name)
    return names


def selfie_output_names(source: str | Path) -> dict[str, str]:
    """File names of what protecting a selfie gives: the whole photo before and after, the
    close-up of the square the mask changes before and after, and the mask file."""
    stem = Path(source).stem or "selfie"
    return {"original": f"{stem}-original.png", "protected": f"{stem}{PROTECTED_SUFFIX}",
            "face-original": f"{stem}-face-original.png", "face-protected": f"{stem}-face{PROTECTED_SUFFIX}",
            "mask": f"{stem}.faceprot"}


def zip_outputs(files: Iterable[Path], dest: Path) -> Path:
    """Store ``files`` (by their names) in the zip ``dest``, uncompressed: PNGs are compressed already."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as z:
        for f in files:
            z.write(f, Path(f).name)
    return dest


def name_in_message(message: str, path: str | Path) -> str:
    """A message with a server-side path shown as the file's own name."""
    return str(message).replace(str(path), Path(path).name)


# ------------------------------------------------------------------------------------ scores


def metric_label(metric: str) -> str:
    return "L2 distance" if metric == "l2" else "cosine"


def threshold_label(s: Score) -> str:
    return ("< " if s.metric == "l2" else ">= ") + f"{s.threshold:.3f}"


def score_rows(scores: Sequence[Score]) -> list[list]:
    """One row per evaluator, in :data:`SCORE_HEADERS` order; the score stays a number (None when
    that evaluator found no face)."""
    return [[s.evaluator, s.role, metric_label(s.metric), None if s.score is None else round(s.score, 3),
             threshold_label(s), s.verdict(), s.note] for s in scores]


def format_table(scores: Sequence[Score]) -> str:
    """Plain-text table, one evaluator per row (the command line's ``compare``)."""
    rows = [("evaluator", "role", "metric", "score", "threshold", "verdict")]
    for s in scores:
        rows.append((s.evaluator, s.role, s.metric, "-" if s.score is None else f"{s.score:.3f}",
                     threshold_label(s), s.verdict()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# ------------------------------------------------------------------------------------ verdicts


#: The transfer figure the caveats quote (BENCHMARKS.md, "The acceptance run on people 0-99", and
#: its frontier.md: masks made against dlib-resnet alone, scored by mobilefacenet, applied with
#: refine 10; 376 photos of 100 LFW acceptance people; medium = v2 at 0.5, paper = v1 at 1).
UNSEEN_FIGURE = ("for example, a mask made against dlib alone hid 2 of 376 photos from MobileFaceNet at medium, "
                 "and 31% at paper")


def unseen_caveat(scores: Iterable[Score]) -> str:
    """A warning (with a leading space) when every recognizer that scored was used to make the
    mask or shares its network: then "no match" says nothing about recognizers the mask never
    saw. Empty when a truly held-out recognizer scored."""
    held_out = [s for s in scores if s.role == "black-box" and "same network weights" not in s.note]
    if held_out:
        return ""
    return (" Every recognizer in this table was used to make the mask or shares its network, so "
            f"this is the best case: one the mask never saw may still recognise you ({UNSEEN_FIGURE}).")


def mask_description(mask, views: int | None = None, seconds: float | None = None) -> str:
    """One plain sentence on how a mask was made: time, views, strength, seed, what it attacked."""
    made = "Mask made" + (f" in {seconds:.1f} s" if seconds is not None else "")
    views_part = (f" from {views} views of you ({mask.generator})" if views is not None
                  else f" ({mask.generator} views)")
    rule = mask.budget_rule()
    if rule is None:  # cloak v1: the paper's RGB box
        budget = (f"each pixel changes by at most {mask.eps * 255:.0f} of 255 levels, "
                  f"{mask.eps_high * 255:.0f} around the eyes, nose, mouth and edges")
    else:
        budget = (f"each pixel's brightness changes by at most {rule.luma_flat * 255:.2g} of 255 levels on "
                  f"smooth skin, up to {rule.luma_texture * 255:.2g} in texture (hair, brows, skin grain) and "
                  f"{rule.eye_luma * 255:.2g} in the eyes; its colour by a fifth of that or less")
        if abs(rule.chroma_ratio - 0.2) > 1e-9:
            budget = budget.replace("a fifth of that", f"{rule.chroma_ratio:.2g} of that")
        if rule.head_margin > 0:
            budget += "; the background beside your head is left as it is"
    return (f"{made}{views_part}; strength {mask.preset} ({budget}), seed {mask.seed}; "
            f"attacked: {', '.join(mask.surrogates)}.")


IDENTITY_STORED = "The mask file stores your face embedding (you opted in): keep it private."


def selfie_verdict(scores: Sequence[Score]) -> str:
    """What the selfie-vs-protected-selfie table means, with the best-case caveat where it applies."""
    return ("The table compares your selfie with its protected copy: *no match* means that "
            "recognizer no longer matches them." + unseen_caveat(scores))


def still_recognised(per_photo: dict[str, Sequence[Score]]) -> dict[str, list[str]]:
    """Per photo name, the evaluators that still match the protected copy to its original."""
    out: dict[str, list[str]] = {}
    for name, scores in per_photo.items():
        found = [s.evaluator for s in scores if s.match]
        if found:
            out[name] = found
    return out


def apply_verdict(per_photo: dict[str, Sequence[Score]], total: int, refine: int,
                  failed: Sequence[str] = ()) -> str:
    """The status after applying a mask: how many photos were protected, which a recognizer still
    finds (and what would protect more), the best-case caveat, and which photos failed."""
    written = len(per_photo)
    status = f"Mask applied to {written} of {total} photo(s)."
    still = still_recognised(per_photo)
    if still:
        status += (f"\n\n**Still recognised: {len(still)} of {written}.** A recognizer still "
                   "matches these protected photos to their originals, so the mask does not hide them "
                   "from it: " + "; ".join(f"{n} ({', '.join(evs)})" for n, evs in still.items())
                   + ". " + ("More refinement steps, or a mask made at strength *high*, protect more."
                             if refine < 10 else "A mask made at strength *high* protects more."))
    elif written:
        status += (" No recognizer here matches any of them to its original any more."
                   + unseen_caveat([s for scores in per_photo.values() for s in scores]))
    if failed:
        status += "\n\nNot protected:\n" + "\n".join(f"- {f}" for f in failed)
    return status


# ------------------------------------------------------------------------------------ verdict lines


def _shares_weights(s: Score) -> bool:
    return "same network weights" in s.note


def match_verdict(scores: Sequence[Score], photo: str, *, selfie: bool = False, strength: str | None = None) -> str:
    """One plain line above a protected photo's table: how many attacked and how many
    never-attacked recognizers still match the protected copy to the original.

    "Attacked" recognizers were surrogates when the mask was made (white-box); the others were
    never attacked (black-box). Where none of those is truly unseen (each shares its network with
    a surrogate, as dlib-cpp does with dlib-resnet) the line says it is the best case. With the
    cloak's ``strength`` given, low or medium, and an attacked recognizer still matching, it says
    that *high* protects more.
    """
    attacked = [s for s in scores if s.role == "white-box"]
    never = [s for s in scores if s.role == "black-box"]
    unseen = [s for s in never if not _shares_weights(s)]
    hit = lambda group: sum(1 for s in group if s.match)  # noqa: E731
    where = ("your selfie, compared with its own protected copy" if selfie
             else f"{photo}, compared with its own protected copy")
    line = (f"On {where}: {hit(attacked)} of {len(attacked)} attacked and {hit(never)} of {len(never)} "
            f"never-attacked recognizers still match you.")
    lost = [s.evaluator for s in scores if s.match is None]
    if lost:
        line += f" No face found by {', '.join(lost)}."
    if not unseen:
        shared = [s.evaluator for s in never if _shares_weights(s)]
        line += ((f" {' and '.join(shared)} was never attacked but shares its network with one that was,"
                  if shared else "") + " so this is the best case: no truly unseen recognizer was tested.")
    if selfie:
        line += " The selfie is the photo the mask was made from, so this is its easiest photo."
    if strength in ("low", "medium") and hit(attacked):
        line += (f" Strength {strength} is chosen to be hard to see, so it protects only some photos: "
                 "*high* protects more, and is visible up close.")
    return line


def check_verdict(scores: Sequence[Score], name_a: str, name_b: str) -> str:
    """One plain line above the Check table: how many recognizers say the two photos match."""
    scored = [s for s in scores if s.match is not None]
    same = sum(1 for s in scored if s.match)
    line = (f"{name_a} and {name_b}: {same} of {len(scored)} recognizers say these show the same person.")
    lost = [s.evaluator for s in scores if s.match is None]
    if lost:
        line += f" No face found by {', '.join(lost)}."
    return line


# ------------------------------------------------------------------------------------ HTML table

#: The score table's style (gr.HTML's css_template). Where its box is narrow (a phone, or a half-width
#: column) each row becomes a card of "label: value" lines, so nothing scrolls sideways and no word
#: or number is split (tests/test_browser.py measures it at 1400 and 390 px).
TABLE_CSS = """
.fp-wrap{container-type:inline-size;width:100%}
.fp-scores{width:100%;border-collapse:collapse;font-size:0.92em}
.fp-scores th,.fp-scores td{padding:4px 6px;text-align:left;vertical-align:top;
  border-bottom:1px solid rgba(128,128,128,.3);word-break:normal;overflow-wrap:normal;hyphens:none}
.fp-scores td.num,.fp-scores td.nowrap,.fp-scores th{white-space:nowrap}
.fp-scores td.fp-match{font-weight:700;color:#b91c1c}
@container (max-width: 820px){
  .fp-scores thead{display:none}
  .fp-scores,.fp-scores tr,.fp-scores td{display:block;width:auto;border:none !important}
  .fp-scores tbody{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:8px}
  .fp-scores tr{border:1px solid rgba(128,128,128,.4) !important;border-radius:6px;padding:4px}
  .fp-scores td{padding:1px 4px;margin:0;line-height:1.35;white-space:normal}
  .fp-scores td::before{content:attr(data-label) ": ";font-weight:600}
}
"""


#: A non-breaking hyphen: "dlib-resnet" and "white-box" never break across lines.
NB_HYPHEN = "\u2011"


def _cell(v) -> str:
    import html

    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v)).replace("-", NB_HYPHEN)


def score_table_html(rows: Sequence[Sequence], headers: Sequence[str] = SCORE_HEADERS) -> str:
    """The score rows as an HTML table (style: :data:`TABLE_CSS`) that turns into one card per row
    where its box is narrow.

    Scores show three decimals ("1.000", never "1"); a missing score shows "-".
    """
    import html

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = []
        for h, v in zip(headers, r):
            cls = ("num" if h == "score" else "fp-match nowrap" if h == "verdict" and v == "match"
                   else "nowrap" if h in ("threshold", "verdict", "metric", "role") else "")
            cells.append(f'<td data-label="{html.escape(h)}"' + (f' class="{cls}"' if cls else "")
                         + f">{_cell(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="fp-wrap"><table class="fp-scores"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table></div>")


def rows_as_records(rows: Sequence[Sequence], headers: Sequence[str] = SCORE_HEADERS) -> list[dict]:
    """The rows as a list of {header: value} records (what API clients get)."""
    return [dict(zip(headers, r)) for r in rows]


def recognizers_note() -> str:
    """Which recognizers this installation has, and which it lacks (their weights are missing)."""
    here = available_evaluators()
    missing = [f"{n} ({surrogate_available(n)[1]})" for n in EVALUATOR_NAMES if n not in here]
    note = "Recognizers on this server: " + ", ".join(f"**{n}**" for n in here) + "."
    if missing:
        note += " Not installed here, so neither attacked nor scored: " + "; ".join(missing) + "."
    return note


# ------------------------------------------------------------------------------------ emotion disguise

#: The disguise's score table: each recognizer against the person's clean photo and, when
#: impersonating, against the target.
DISGUISE_HEADERS = ["evaluator", "role", "compared with", "metric", "score", "threshold", "verdict", "note"]
EXPRESSION_HEADERS = ["judge", "role", "before", "after", "p(emotion) before", "p(emotion) after", "shows it"]


def disguise_rows(self_scores: Sequence[Score], target_scores: Sequence[Score] = (),
                  target_label: str = "the target") -> list[list]:
    """:data:`DISGUISE_HEADERS` rows: every recognizer against you, then against the target."""
    rows = []
    for who, scores in (("you (your photo)", self_scores), (target_label, target_scores)):
        for r in score_rows(scores):
            rows.append([r[0], r[1], who, *r[2:]])
    return rows


def expression_rows(readings) -> list[list]:
    """:data:`EXPRESSION_HEADERS` rows from :class:`faceprot.disguise.scores.ExpressionReading` s."""
    yes = {True: "yes", False: "no", None: "cannot tell"}
    return [[e.judge, e.role, e.before, e.after,
             None if e.p_before is None else round(e.p_before, 3),
             None if e.p_after is None else round(e.p_after, 3), yes[e.shown]] for e in readings]


def disguise_verdict(scores, photo: str, emotion: str, target_label: str | None = None) -> str:
    """The lines above the disguise's tables: who still recognises you (attacked vs never
    attacked), whether the target is matched, and whether the expression shows, judge by judge.

    Args:
        scores: :class:`faceprot.disguise.scores.DisguiseScores`.
        photo: the photo's name.  emotion: the one asked for.  target_label: the target's name
            when impersonating.
    """
    lines = [match_verdict(scores.self, photo).replace("its own protected copy", "its disguised copy")]
    if target_label:
        attacked = [s for s in scores.target if s.role == "white-box"]
        never = [s for s in scores.target if s.role == "black-box"]
        hit = lambda group: sum(1 for s in group if s.match)  # noqa: E731
        lines.append(f"Matched to {target_label}: {hit(attacked)} of {len(attacked)} attacked and "
                     f"{hit(never)} of {len(never)} never-attacked recognizers.")
    judged = []
    for e in scores.expression:
        verdict = {True: "yes", False: "no", None: "cannot tell (no face found)"}[e.shown]
        name = {"expression": "the expression classifier it optimised against",
                "expression-heldout": "a held-out classifier it never saw",
                "landmarks": "the landmark measure (no weights)"}.get(e.judge, e.judge)
        judged.append(f"{name}: {verdict}")
    lines.append(f"Does the face look {emotion}? " + "; ".join(judged) + ".")
    return "\n\n".join(lines)


__all__ = [
    "output_names", "selfie_output_names", "zip_outputs", "name_in_message", "SCORE_HEADERS", "score_rows", "format_table",
    "unseen_caveat", "mask_description", "selfie_verdict", "still_recognised", "apply_verdict",
    "recognizers_note", "IDENTITY_STORED", "PROTECTED_SUFFIX", "ZIP_NAME", "match_verdict",
    "check_verdict", "score_table_html", "rows_as_records", "DISGUISE_HEADERS", "EXPRESSION_HEADERS",
    "disguise_rows", "expression_rows", "disguise_verdict",
]
