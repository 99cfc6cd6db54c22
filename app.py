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
from pathlib import Path

from faceprot import report
from faceprot.cloak import PRESETS, PersonalMask, apply_mask, enroll
from faceprot.errors import FaceprotError
from faceprot.evaluators import compare_photos
from faceprot.io import encode_png, load_image
from faceprot.protect import changed_region, locate
from faceprot.report import SCORE_HEADERS
from faceprot.runtime import configure_threads

configure_threads()

# shares of the table's width: it fills its box at any window size, the note gets the most
SCORE_WIDTHS = ["14%", "12%", "12%", "9%", "14%", "11%", "28%"]
APPLY_WIDTHS = ["12%", "13%", "11%", "11%", "8%", "13%", "10%", "22%"]

INTRO = """
# faceprot
Protect your face photos from face recognition, and see honestly how much protection you get.
Scores come from several recognizers: **white-box** ones were attacked during protection,
**black-box** ones were not (they show whether protection transfers).
"""


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
                raise gr.Error(f"Photo {label}: {report.name_in_message(e, path)}") from None
        a, b = pics["A"], pics["B"]
        progress(0.3, desc="Detecting faces and scoring")
        scores = compare_photos(a.rgb, b.rgb)
    except FaceprotError as e:
        raise gr.Error(str(e)) from None
    notes = a.notices + b.notices
    if notes:
        gr.Info(" ".join(notes))
    return _score_table(report.score_rows(scores))


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
        located = locate(load_image(selfie), "largest")  # read and detected once, passed along
        pic, face = located.picture, located.chosen[0]
        result = enroll(pic, face=face, preset=strength, seed=int(seed or 0), generator=generator,
                        store_identity=bool(remember_me), progress=lambda f, m: progress(0.9 * f, desc=m))
        progress(0.9, desc="Applying the mask to the selfie")
        protected = apply_mask(located, result.mask)
        progress(0.95, desc="Scoring before and after")
        scores = compare_photos(pic.rgb, protected.picture.rgb, surrogates=result.mask.surrogates, face_a=face)
    except FaceprotError as e:
        raise gr.Error(report.name_in_message(e, selfie)) from None
    out = _out_dir()
    names = {k: out / v for k, v in report.selfie_output_names(selfie).items()}
    names["original"].write_bytes(encode_png(pic))
    names["protected"].write_bytes(protected.png())
    # the close-up: the square the mask changes, before and after, so the grain is visible
    x0, y0, x1, y1 = changed_region(pic, face)
    for key, rgb in (("face-original", pic.rgb), ("face-protected", protected.picture.rgb)):
        names[key].write_bytes(encode_png(rgb[y0:y1, x0:x1].copy(), icc_profile=pic.icc_profile))
    result.mask.save(names["mask"])
    maps = [(img, name) for name, img in result.teaching_maps().items()]
    m = result.mask
    summary = (report.mask_description(m, len(result.views.images), result.seconds["total"])
               + " " + report.selfie_verdict(scores))
    if m.identity:
        summary += " " + report.IDENTITY_STORED
    notes = protected.notices
    if notes:
        gr.Info(" ".join(notes))
    return ((str(names["original"]), str(names["protected"])),
            (str(names["face-original"]), str(names["face-protected"])), str(names["mask"]), maps,
            _score_table(report.score_rows(scores)), summary)


def apply_tab(mask_file, photos, which, refine, progress=gr.Progress()):
    """Apply my mask: a mask file and photos in; protected PNGs (zipped when several) and scores out."""
    if not mask_file:
        raise gr.Error("Please upload your .faceprot mask file (from the 'Protect my face' tab).")
    if not photos:
        raise gr.Error("Please upload one or more photos.")
    try:
        mask = PersonalMask.load(mask_file)
    except FaceprotError as e:
        raise gr.Error(report.name_in_message(e, mask_file)) from None
    out = _out_dir()
    written, rows, failed, per_photo = [], [], [], {}
    targets = report.output_names(photos)
    for k, path in enumerate(progress.tqdm(photos, desc="Protecting photos")):
        name = Path(path).name
        try:
            pic = load_image(path)
            # Refinement stays on the CPU here: this handler is not a spaces.GPU function, and on
            # ZeroGPU CUDA is only real inside one.
            result = apply_mask(pic, mask, faces=which, refine=int(refine), seed=k, device="cpu")
            target = out / targets[k]
            target.write_bytes(result.png())
            written.append(target)
            # the scores compare the largest face of each: reuse it when it is the one protected
            scores = compare_photos(pic.rgb, result.picture.rgb, surrogates=mask.surrogates,
                                    face_a=result.faces[0] if which == "largest" else None)
            per_photo[name if name not in per_photo else f"{name} ({k + 1})"] = scores
            rows += [[name, *row] for row in report.score_rows(scores)]
        except FaceprotError as e:
            message = report.name_in_message(e, path)
            failed.append(message if message.startswith(name) else f"{name}: {message}")
    if not written:
        raise gr.Error("No photo could be protected. " + " ".join(failed))
    download = written[0] if len(written) == 1 else report.zip_outputs(written, out / report.ZIP_NAME)
    status = report.apply_verdict(per_photo, len(photos), int(refine), failed)
    return [str(w) for w in written], str(download), _score_table(rows, ["photo", *SCORE_HEADERS]), status


with gr.Blocks(title="faceprot") as demo:
    gr.Markdown(INTRO + "\n" + report.recognizers_note())
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
