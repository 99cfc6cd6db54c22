"""faceprot's Gradio demo: a thin shell over the ``faceprot`` package.

    python app.py            # serves on http://127.0.0.1:7860 (GRADIO_SERVER_* env vars apply)
"""

from __future__ import annotations

try:  # on a ZeroGPU Space `spaces` must be imported before torch initialises CUDA
    import spaces  # noqa: F401
except ImportError:  # pragma: no cover - optional outside Spaces
    spaces = None

import gradio as gr
import pandas as pd  # gradio's own dependency

import tempfile
import zipfile
from pathlib import Path

from faceprot.cloak import PRESETS, PersonalMask, apply_mask, enroll
from faceprot.errors import FaceprotError, NoFaceError
from faceprot.evaluators import EVALUATOR_NAMES, available_evaluators, compare_photos
from faceprot.faces import find_faces
from faceprot.recognizers import surrogate_available
from faceprot.io import encode_png, load_image
from faceprot.runtime import configure_threads

configure_threads()

SCORE_HEADERS = ["evaluator", "role", "metric", "score", "threshold", "verdict", "note"]
# shares of the table's width: it fills its box at any window size, the note gets the most
SCORE_WIDTHS = ["14%", "12%", "12%", "9%", "14%", "11%", "28%"]
APPLY_WIDTHS = ["12%", "13%", "11%", "11%", "8%", "13%", "10%", "22%"]

INTRO = """
# faceprot
Protect your face photos from face recognition, and see honestly how much protection you get.
Scores come from several recognizers: **white-box** ones were attacked during protection,
**black-box** ones were not (they show whether protection transfers).
"""


def recognizers_note() -> str:
    """Which recognizers this server has, and which it lacks (their weights are not installed)."""
    here = available_evaluators()
    missing = [f"{n} ({surrogate_available(n)[1]})" for n in EVALUATOR_NAMES if n not in here]
    note = "Recognizers on this server: " + ", ".join(f"**{n}**" for n in here) + "."
    if missing:
        note += (" Not installed here, so neither attacked nor scored: " + "; ".join(missing) + ".")
    return note


def _mention_name(e: Exception, path: str) -> str:
    """The error's message with the server's temporary path shown as the file's own name."""
    return str(e).replace(str(path), Path(path).name)


def _score_rows(scores) -> list[list]:
    rows = []
    for s in scores:
        op = "<" if s.metric == "l2" else ">="
        rows.append([s.evaluator, s.role, "L2 distance" if s.metric == "l2" else "cosine",
                     None if s.score is None else round(s.score, 3), f"{op} {s.threshold:.3f}",
                     s.verdict(), s.note])
    return rows


def _unseen_caveat(scores) -> str:
    """A warning when every recognizer that scored was used to make the mask or shares its network:
    then "no match" says nothing about recognizers the mask never saw."""
    held_out = [s for s in scores if s.role == "black-box" and "same network weights" not in s.note]
    if held_out:
        return ""
    return (" Every recognizer in this table was used to make the mask or shares its network, so "
            "this is the best case: one the mask never saw may still recognise you (a mask made "
            "against dlib alone hid only 23% of photos from MobileFaceNet).")


def _score_table(rows: list[list], headers: list[str] = SCORE_HEADERS):
    """The rows as a table whose scores all show three decimals ("1.000", not "1"); API clients
    still get the numbers."""
    # dtype object keeps a missing score None (JSON null), not NaN
    return pd.DataFrame(rows, columns=headers, dtype=object).style.format({"score": "{:.3f}"}, na_rep="-")


def check(photo_a: str | None, photo_b: str | None, progress=gr.Progress()):
    """Check tab: do two photos show the same person, according to each recognizer?"""
    if not photo_a or not photo_b:
        raise gr.Error("Please upload two photos.")
    pics = {}
    try:
        progress(0.1, desc="Reading photos")
        for label, path in (("A", photo_a), ("B", photo_b)):
            try:
                pics[label] = load_image(path)
            except FaceprotError as e:
                raise gr.Error(f"Photo {label}: {_mention_name(e, path)}") from None
        a, b = pics["A"], pics["B"]
        progress(0.3, desc="Detecting faces and scoring")
        scores = compare_photos(a.rgb, b.rgb)
    except NoFaceError as e:  # say which photo (the detector runs again only on this error path)
        try:
            find_faces(a.rgb)
            which = "B"
        except NoFaceError:
            which = "A"
        raise gr.Error(f"Photo {which}: {e}") from None
    except FaceprotError as e:
        raise gr.Error(str(e)) from None
    notes = a.notices + b.notices
    if notes:
        gr.Info(" ".join(notes))
    return _score_table(_score_rows(scores))


STRENGTH_HELP = """
**Strength trades protection for visibility.** Measured (BENCHMARKS.md, 2026-12): the share of a
person's *other* photos that face search no longer finds at top-1, for dlib-cpp / dlib-resnet /
mobilefacenet, with a mask made against dlib-resnet and mobilefacenet from one photo.

| strength | budget (on eyes, nose, mouth, edges) | LFW photos, 1,499-photo gallery | real-size photos, 75-photo gallery | face PSNR |
|---|---|---|---|---|
| low | 4/255 (8/255) | 21 / 18 / 7% (20 people) | 4 / 4 / 2% | 37.6 dB |
| medium, the paper's | 8/255 (16/255) | 83 / 87 / 72.5% (100 people) | 47 / 53 / 44% | 32.0 dB |
| high | 12/255 (24/255) | 99.5 / 99 / 97% (100 people) | 96.5 / 98 / 93% | 28.5 dB |

*low* barely protects; choose *high* for photos unlike your selfie (other poses, light, years).
'Apply my mask' refines each photo by default (10 steps, about 1 s a face), fitting the cloak to
it against the surrogates: on the real-size photos, *medium* then hid all 39 measured from these
three. No cloak is a guarantee: a recognizer the mask never saw (black-box rows) may still find
you; a mask made against dlib alone hid only 23% of photos from mobilefacenet.
"""


def _gpu(duration):
    """``spaces.GPU`` with a duration estimate on a ZeroGPU Space; a no-op everywhere else."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def _enroll_seconds(selfie, strength, seed, generator, remember_me, progress=None) -> int:
    """ZeroGPU time to ask for: the views (Arc2Face: 8 images x 25 steps), CUDA's start and the
    optimisation, detection and scoring. On an H200 the optimisation took 0.06 s an iteration
    after a 4.6 s first call (BENCHMARKS.md, "The cloak on a GPU"); 1 s an iteration leaves room
    for a smaller GPU slice."""
    iterations = PRESETS.get(strength, PRESETS["medium"])["iterations"]
    views = 40 if generator == "arc2face" else 5
    return int(views + 10 + iterations + 15)


def _out_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="faceprot-"))


@_gpu(_enroll_seconds)
def protect(selfie, strength, seed, generator, remember_me, progress=gr.Progress()):
    """Protect my face: one selfie in; protected selfie, mask file, teaching maps and scores out."""
    if not selfie:
        raise gr.Error("Please upload a selfie.")
    try:
        progress(0.0, desc="Reading the selfie")
        pic = load_image(selfie)
        result = enroll(pic, preset=strength, seed=int(seed or 0), generator=generator,
                        store_identity=bool(remember_me),
                        progress=lambda f, m: progress(0.9 * f, desc=m))
        progress(0.9, desc="Applying the mask to the selfie")
        protected = apply_mask(pic, result.mask)
        progress(0.95, desc="Scoring before and after")
        scores = compare_photos(pic.rgb, protected.picture.rgb, surrogates=result.mask.surrogates)
    except FaceprotError as e:
        raise gr.Error(str(e)) from None
    out = _out_dir()
    stem = Path(selfie).stem or "selfie"
    before, after = out / f"{stem}-original.png", out / f"{stem}-protected.png"
    before.write_bytes(encode_png(pic))
    after.write_bytes(encode_png(protected.picture))
    # the close-up: the square the mask changes, before and after, so the grain is visible
    h, w = pic.rgb.shape[:2]
    x0, y0, x1, y1 = protected.faces[0].transform.region_bbox(w, h)
    near_before, near_after = out / f"{stem}-face-original.png", out / f"{stem}-face-protected.png"
    near_before.write_bytes(encode_png(pic.rgb[y0:y1, x0:x1].copy(), icc_profile=pic.icc_profile))
    near_after.write_bytes(encode_png(protected.picture.rgb[y0:y1, x0:x1].copy(), icc_profile=pic.icc_profile))
    mask_path = out / f"{stem}.faceprot"
    result.mask.save(mask_path)
    maps = [(img, name) for name, img in result.teaching_maps().items()]
    m = result.mask
    summary = (f"Mask made in {result.seconds['total']:.1f} s from {len(result.views.images)} views "
               f"({m.generator}); strength **{m.preset}** (eps {m.eps * 255:.0f}/255, "
               f"{m.eps_high * 255:.0f}/255 on eyes, nose, mouth and edges), seed {m.seed}, "
               f"surrogates: {', '.join(m.surrogates)}. The table compares your selfie with its "
               "protected copy: *no match* means that recognizer no longer matches them."
               + _unseen_caveat(scores))
    if m.identity:
        summary += " The mask file stores your face embedding (you opted in): keep it private."
    notes = pic.notices + protected.notices
    if notes:
        gr.Info(" ".join(notes))
    return ((str(before), str(after)), (str(near_before), str(near_after)), str(mask_path), maps,
            _score_table(_score_rows(scores)), summary)


def apply_tab(mask_file, photos, which, refine, progress=gr.Progress()):
    """Apply my mask: a mask file and photos in; protected PNGs (zipped when several) and scores out."""
    if not mask_file:
        raise gr.Error("Please upload your .faceprot mask file (from the 'Protect my face' tab).")
    if not photos:
        raise gr.Error("Please upload one or more photos.")
    try:
        mask = PersonalMask.load(mask_file)
    except FaceprotError as e:
        raise gr.Error(_mention_name(e, mask_file)) from None
    out = _out_dir()
    written, rows, failed, still_found, all_scores = [], [], [], {}, []
    for k, path in enumerate(progress.tqdm(photos, desc="Protecting photos")):
        name = Path(path).name
        try:
            pic = load_image(path)
            # Refinement stays on the CPU here: this handler is not a spaces.GPU function, and on
            # ZeroGPU CUDA is only real inside one.
            result = apply_mask(pic, mask, faces=which, refine=int(refine), seed=k, device="cpu")
            target = out / f"{Path(path).stem}-protected.png"
            n = 1
            while target.exists():
                n += 1
                target = out / f"{Path(path).stem}-protected-{n}.png"
            target.write_bytes(encode_png(result.picture))
            written.append(target)
            for s in compare_photos(pic.rgb, result.picture.rgb, surrogates=mask.surrogates):
                all_scores.append(s)
                rows.append([name, *_score_rows([s])[0]])
                if s.match:
                    still_found.setdefault(name, []).append(s.evaluator)
        except FaceprotError as e:
            message = _mention_name(e, path)
            failed.append(message if message.startswith(name) else f"{name}: {message}")
    if not written:
        raise gr.Error("No photo could be protected. " + " ".join(failed))
    download = written[0]
    if len(written) > 1:
        download = out / "protected-photos.zip"
        with zipfile.ZipFile(download, "w", zipfile.ZIP_STORED) as z:  # PNGs are compressed already
            for w in written:
                z.write(w, w.name)
    status = f"Mask applied to {len(written)} of {len(photos)} photo(s)."
    if still_found:
        status += (f"\n\n**Still recognised: {len(still_found)} of {len(written)}.** A recognizer still "
                   "matches these protected photos to their originals, so the mask does not hide them "
                   "from it: " + "; ".join(f"{n} ({', '.join(evs)})" for n, evs in still_found.items())
                   + ". " + ("More refinement steps, or a mask made at strength *high*, protect more."
                             if int(refine) < 10 else "A mask made at strength *high* protects more."))
    else:
        status += (" No recognizer here matches any of them to its original any more."
                   + _unseen_caveat(all_scores))
    if failed:
        status += "\n\nNot protected:\n" + "\n".join(f"- {f}" for f in failed)
    return [str(w) for w in written], str(download), _score_table(rows, ["photo", *SCORE_HEADERS]), status


with gr.Blocks(title="faceprot") as demo:
    gr.Markdown(INTRO + "\n" + recognizers_note())
    with gr.Tab("Check"):
        gr.Markdown("Upload two photos. Each recognizer says whether they show the same person. "
                    "Here *white-box* marks the recognizers that the cloak attacks by default.")
        with gr.Row():
            # format="png" everywhere: Gradio's default webp is lossy and would erase a cloak.
            photo_a = gr.Image(label="Photo A", type="filepath", format="png", height=320)
            photo_b = gr.Image(label="Photo B", type="filepath", format="png", height=320)
        check_btn = gr.Button("Compare", variant="primary")
        check_table = gr.Dataframe(headers=SCORE_HEADERS, label="Face recognition scores",
                                   interactive=False, wrap=True, column_widths=SCORE_WIDTHS)
        check_btn.click(check, [photo_a, photo_b], check_table, api_name="check")

    with gr.Tab("Protect my face"):
        gr.Markdown("Upload one selfie. faceprot makes varied views of you, optimises one personal "
                    "mask over all of them, and gives you the mask file to protect any later photo.\n\n"
                    + STRENGTH_HELP)
        with gr.Row():
            with gr.Column():
                selfie = gr.Image(label="Your selfie", type="filepath", format="png", height=320)
                strength = gr.Radio(list(PRESETS), value="medium", label="Strength",
                                    info="low: hard to see, barely protects. medium: the paper's setting. "
                                         "high: strongest, visibly grainier. Measured figures above.")
                seed = gr.Number(value=0, precision=0, label="Seed (same selfie + seed = same mask)")
                generator = gr.Radio(["augment", "arc2face"], value="augment", label="Views",
                                     info="augment: realistic edits of your selfie (CPU). arc2face: "
                                          "synthetic photos of you (GPU and Hub weights needed).")
                remember = gr.Checkbox(False, label="Store my face embedding in the mask",
                                       info="Lets 'Apply my mask' protect only you in group photos. "
                                            "Off by default: the file then holds no face data.")
                protect_btn = gr.Button("Protect", variant="primary")
            with gr.Column():
                slider = gr.ImageSlider(label="Before / after", type="filepath", format="png")
                closeup = gr.ImageSlider(label="Close-up: the part of the photo the mask changes",
                                         type="filepath", format="png")
                mask_out = gr.File(label="Your mask file (keep it; use it in 'Apply my mask')")
                protect_summary = gr.Markdown()
        maps = gr.Gallery(label="How the mask was made: budget stickers, high-pass edges, learned "
                                "attention, and the mask amplified", columns=4, format="png", height=300)
        protect_table = gr.Dataframe(headers=SCORE_HEADERS, label="Selfie vs protected selfie",
                                     interactive=False, wrap=True, column_widths=SCORE_WIDTHS)
        protect_btn.click(protect, [selfie, strength, seed, generator, remember],
                          [slider, closeup, mask_out, maps, protect_table, protect_summary], api_name="protect",
                          show_progress_on=slider)  # one progress bar, not one per output

    with gr.Tab("Apply my mask"):
        gr.Markdown("Protect new photos of yourself with your saved mask. Only a square around each "
                    "protected face changes (the face, hair and a margin of background, where the "
                    "cloak's grain can show); every pixel outside it is left exactly as it was. "
                    "Outputs are lossless PNG.")
        with gr.Row():
            with gr.Column():
                mask_in = gr.File(label="Your mask file (.faceprot)", file_types=[".faceprot"], type="filepath")
                photos_in = gr.File(label="Photos", file_count="multiple", file_types=["image"], type="filepath")
                which = gr.Radio(["largest", "all", "me"], value="largest", label="Faces to protect",
                                 info="'me' needs a mask made with the embedding stored.")
                refine = gr.Slider(0, 10, value=10, step=1, label="Per-photo refinement steps",
                                   info="0: your mask as it is (instant), the same on every photo, so "
                                        "whoever has one original and protected pair can estimate it "
                                        "and strip it from the rest. 10: each photo gets its own cloak "
                                        "that keeps protecting after such stripping (about 1 s per face).")
                apply_btn = gr.Button("Apply", variant="primary")
            with gr.Column():
                gallery = gr.Gallery(label="Protected photos", format="png", columns=3, height=360,
                                     object_fit="contain")  # whole photos, faces not cropped off
                download = gr.File(label="Download (a zip when there are several)")
                apply_status = gr.Markdown()
        apply_table = gr.Dataframe(headers=["photo", *SCORE_HEADERS], label="Original vs protected",
                                   interactive=False, wrap=True, column_widths=APPLY_WIDTHS)
        apply_btn.click(apply_tab, [mask_in, photos_in, which, refine],
                        [gallery, download, apply_table, apply_status], api_name="apply",
                        show_progress_on=gallery)


if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1).launch()
