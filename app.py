"""faceprot's Gradio demo: a thin shell over the ``faceprot`` package.

    python app.py            # serves on http://127.0.0.1:7860 (GRADIO_SERVER_* env vars apply)

Layout and wiring only: reading, protecting, scoring, naming outputs and wording verdicts all live
in the package (``faceprot.protect``, ``faceprot.cloak``, ``faceprot.evaluators``,
``faceprot.report``).
"""

from __future__ import annotations

try:  # on a ZeroGPU Space `spaces` must be imported before torch initialises CUDA
    import spaces  # noqa: F401
except ImportError:  # pragma: no cover - optional outside Spaces
    spaces = None

import atexit
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio_client import handle_file

from faceprot import report
from faceprot.cloak import DEFAULT_REFINE, PRESETS, STRENGTHS, PersonalMask, apply_mask, enroll
from faceprot.disguise import OFFERED, diffusion
from faceprot.disguise import STRENGTHS as DISGUISE_STRENGTHS
from faceprot.disguise import disguise as disguise_photo
from faceprot.disguise import gallery as built_in_targets
from faceprot.disguise.engine import EMOTIONS as DISGUISE_EMOTIONS
from faceprot.disguise.engine import locate_faces
from faceprot.disguise.measure import EMOTION_RULES
from faceprot.disguise.scores import score_disguise, warp_arrows
from faceprot.errors import FaceprotError, ModelUnavailableError
from faceprot.evaluators import compare_photos
from faceprot.io import encode_png, load_image
from faceprot.protect import changed_region, locate
from faceprot.recognizers import load_surrogate
from faceprot.report import SCORE_HEADERS
from faceprot.retention import Retention, describe_duration
from faceprot.runtime import configure_threads

configure_threads()
log = logging.getLogger("faceprot.app")

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
gr.set_static_paths(paths=[HERE / "BENCHMARKS.md"])  # the strength help links to it


# ------------------------------------------------------------------------------------ in public


def _env_number(name: str, default: float, kind=int):
    raw = os.environ.get(name, "").strip()
    try:
        value = kind(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SystemExit(f"{name}={raw!r} must be positive")
    return value


#: Events that run at once (the rest wait in the queue), and how many may wait.
CONCURRENCY = _env_number("FACEPROT_CONCURRENCY", 1)
QUEUE_SIZE = _env_number("FACEPROT_QUEUE_SIZE", 16)
#: The largest upload accepted, in MB: phone photos are 2-12 MB, a mask file about 1 MB.
MAX_UPLOAD_MB = _env_number("FACEPROT_MAX_UPLOAD_MB", 20, float)
#: Side of the small copy that previews and validators decode (never used for protection).
SMALL_COPY_PX = 1024

# Every upload and result lives in this run's folder, deleted file by file after the TTL and as
# a whole when the server stops; a new server deletes the folders of servers that are gone. The
# lazily cached examples (the framework's example cache, outside that folder) are the exemption.
EXAMPLE_CACHE = Path(os.environ.get("GRADIO_EXAMPLES_CACHE", ".gradio/cached_examples")).resolve()
RETENTION = Retention(exempt=[EXAMPLE_CACHE])
RETENTION.start()
atexit.register(RETENTION.close)
os.environ["GRADIO_TEMP_DIR"] = str(RETENTION.uploads)  # before any Blocks: uploads go there

# ------------------------------------------------------------------------------------ ZeroGPU

#: On a ZeroGPU Space (``spaces`` sets SPACES_ZERO_GPU) the models load at import and move to
#: CUDA there, as ZeroGPU asks; CUDA itself is only real inside a ``spaces.GPU`` function.
ON_ZEROGPU = spaces is not None and os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")
#: The models a GPU protect uses, loaded once per process on a ZeroGPU Space.
GPU_MODELS = ("dlib-resnet", "mobilefacenet", "arcface-r100", "arc2face")


def _load_each(loaders: dict) -> dict[str, str]:
    """Call each loader once, at import. Returns, for each model that could not be loaded, why:
    its path then fails over to the CPU instead of failing the request."""
    failed = {}
    for name, load in loaders.items():
        try:
            load()
        except Exception as e:  # no weights, no Hub, no CUDA: the request falls back, with a note
            failed[name] = f"{type(e).__name__}: {e}"
            log.warning("GPU model %s not loaded: %s", name, failed[name])
    return failed


def _load_gpu_models(device: str = "cuda:0") -> dict[str, str]:
    """Load every model a GPU protect uses onto ``device`` (:func:`_load_each`): a failed one
    fails over to the CPU (arc2face to augment). The device is named with its index, so that
    nothing asks CUDA which device is current outside a GPU function; inside one, "cuda" finds
    these same models (the caches key on "cuda:0")."""
    from faceprot.generators.arc2face import load_arc2face

    return _load_each({name: (lambda n=name: load_arc2face(device) if n == "arc2face" else load_surrogate(n, device))
                       for name in GPU_MODELS})


def _load_diffusion_models() -> dict[str, str]:
    """Load the diffusion engine's own models and the expression model onto CUDA
    (:func:`_load_each`; the recognisers are among :data:`GPU_MODELS`). The DDPM and the landmark
    model are keyed on "cuda", as the engine asks for them inside a GPU function (device auto)."""
    from faceprot.disguise.landmarks3d import load_landmarks_3d68
    from faceprot.expression import load_expression_model

    return _load_each({diffusion.REGISTRY_KEY: lambda: diffusion.load_ddpm("cuda"),
                       "landmarks-3d68": lambda: load_landmarks_3d68("cuda"),
                       "expression": lambda: load_expression_model("expression", "cuda:0")})


GPU_MODELS_FAILED: dict[str, str] = _load_gpu_models() if ON_ZEROGPU else {}

INTRO = """
# faceprot
Protect your face photos from face recognition, and see honestly how much protection you get.

1. **Protect my face**: upload one selfie. faceprot makes a personal mask from it and shows
   whether face recognition still matches your protected selfie. Download the mask file.
2. **Apply my mask**: upload that mask file and new photos of you. You get protected copies
   (lossless PNG) and the same check for each.
3. **Emotion disguise**: upload a photo and pick an emotion. faceprot gives your face that
   expression in a version that face recognition no longer matches to you (or matches to a blend
   of other faces), and shows what recognizers and expression judges make of it.
4. **Check**: upload any two photos and see whether face recognition says they show the same person.

It makes you harder to find by face recognition, not impossible: read what it can and cannot do below.
"""

LIMITS = """
**What this can and cannot do.** faceprot changes the pixels in a square around your face so that
face recognition systems, like those behind face search engines and photo scrapers, match your
photo to your other photos less often. People still recognise you. It is tested against the few
recognizers on this page: the ones it **attacked** (used to make the mask) and the ones it
**never attacked**. A recognizer it never saw may still find you, and a mask made from one selfie
protects photos unlike that selfie less well. The default strength is hard to see and protects
only some photos, and almost none of large photos unlike the selfie; the stronger ones protect
more and are visible up close. Someone who has an
original and a protected copy of one of your photos can partly undo a mask on your other photos. No cloak is a guarantee: treat it as making you harder to find, not
impossible.
"""

PRIVACY = f"""
Your photos and everything made from them (protected copies, previews, mask files) are kept on
this server only so that you can see and download them: in a temporary folder of this server
run, where each file is **deleted {describe_duration(RETENTION.ttl)} after it was made**, and all
of them when the server stops or restarts. They are not shared, not used for anything else, and
no copy of your face is kept. The server's log keeps one line for each error, with the file name
you uploaded. There is no tracking and no usage statistics. The results of the example photos
below are kept, since everyone sees the same ones.
"""

SURROGATE_CHOICES = {
    "dlib + MobileFaceNet": ["dlib-resnet", "mobilefacenet"],
    "dlib only": ["dlib-resnet"],
    "MobileFaceNet only": ["mobilefacenet"],
}

BENCHMARKS_URL = "/gradio_api/file=" + str(HERE / "BENCHMARKS.md")

STRENGTH_INFO = ("low: fainter than medium, barely protects. medium: hard to see, protects some photos. "
                 "high: visible up close, protects most. paper: the published setting, plainly visible. "
                 "See the close-ups below.")

STRENGTH_HELP = f"""
**How strong, and how visible?** Stronger masks hide you from more recognizers and show more. The
close-ups below are the example selfie at 100%, made as this page makes them. low, medium and high
change mostly brightness, more in texture (hair, brows, skin grain) than on smooth skin, very
little colour, almost nothing in the eyes and nothing in the background beside your head.

- **low** is fainter than medium (0.7x its budget; not itself in a blind look) and barely protects.
- **medium** (the default) is chosen to be hard to see: in a blind test a reviewer shown a clean
  and a medium photo side by side, who saw no difference in any pair, picked the protected one in
  9 of 20 pairs (chance is 10), while picking *paper*'s in 20 of 20. It protects far less than
  the stronger settings, and hardly at all on large photos unlike the selfie (below).
- **high** protects most photos and is visible up close: faint grain and strand-like texture on
  the skin.
- **paper** is the published method's setting (an RGB box): plainly visible, with tinted eyes
  and blotchy skin. It is here for comparison and teaching.

What they did, measured on 100 LFW people set aside for the final test. The strengths were chosen
on other people, though 40 of these had helped tune older optimiser settings. With a mask made from
one photo against dlib and MobileFaceNet and applied as *Apply my mask* applies it (10 refinement
steps), the share of a person's *other* photos (376 in all) that a face search among 1,499 others no
longer found (dlib-cpp / dlib-resnet / MobileFaceNet), and the face's PSNR:

- low: 15 / 29 / 0%; 44.9 dB (on 20 of the people the settings were chosen on);
- medium: 56 / 75 / 14%, and 26 / 34 / 4% after a JPEG re-save; 42.1 dB (on the 60
  people never used for any tuning: 52 / 73 / 12%);
- high: 99 / 99.7 / 89%, and 94 / 97 / 75% after a JPEG re-save; 36.7 dB;
- paper: 99 / 100 / 100%; 32.6 dB.

On 18 people's real-size photos, which differ from the selfie far more (pose, light, years):
medium 3.5 / 5.3 / 0%, high 72 / 93 / 47%, paper 98 / 100 / 100%.

Protection against a recognizer the mask never saw is lower still. How each figure was measured:
[BENCHMARKS.md]({BENCHMARKS_URL}).
"""

DISGUISE_INTRO = """
Give your face an expression, and hide who you are. faceprot bends your face's landmarks into the
expression (a smooth warp, drawn as arrows below) and adds a little noise that face recognition
reacts to. The expression is made by the warp alone; the noise only hides who you are. With a
target, face recognition should match you to it instead; the targets are blends of several faces,
never one real person.
"""

DISGUISE_MEASURED = f"""
**How well does it work? Measured, not promised.** On 150 LFW photos (250 x 250 px, one photo per
person, medium, happy, hiding from recognition), face search among 1,499 other photos no longer put
the person first for **92%** (dlib-cpp, never attacked), **91%** (dlib-resnet) and **68%**
(MobileFaceNet) of the disguised photos. Of the 96 faces that did not already look happy to the
expression classifier it optimises against, it then read happy on **52%**; a classifier it never saw
on **45%**; the landmark measure (mouth corners up, mouth wider) confirmed **70%**. The smile is
small: the warp moves each landmark by at most 0.12 of the distance between the eyes and cannot
open a mouth. In a blind look by a reviewer who knew nothing of the method, 14 of 20 disguised
faces looked natural (19 of 20 real ones did). About 10 s a photo on a 2-core CPU. How each figure
was measured: [BENCHMARKS.md]({BENCHMARKS_URL}).
"""

_NOT_OFFERED = [e for e in DISGUISE_EMOTIONS if e not in OFFERED]
#: The emotions not offered, as measured on the CPU (benchmarks/results/disguise/lfw-other-emotions20:
#: 20 LFW people, medium, dodging): the held-out classifier's reading of the output, over the faces
#: it did not already read as that emotion. The landmark measure cannot judge them.
NOT_OFFERED_MEASURED = {"surprise": (0, 19), "sad": (5, 17), "angry": (1, 13)}
EMOTION_INFO = ("Only the emotions that a measure can confirm on the output are offered. Not offered yet, "
                "as the landmark measure cannot confirm them on real photos: "
                + "; ".join(f"{e} (a held-out classifier read it on {NOT_OFFERED_MEASURED[e][0]} of "
                            f"{NOT_OFFERED_MEASURED[e][1]} disguised LFW faces)" for e in _NOT_OFFERED) + "."
                if _NOT_OFFERED else "")

MASK_FILE_NOTE = ("Your mask file. It holds the mask itself and how it was made: no photo, and no "
                  "face embedding unless you chose to store it (More settings). Its maps follow your "
                  "face's layout, so keep it private. Use it in 'Apply my mask'.")


# ------------------------------------------------------------------------------------ errors


class _Errors:
    """The last user error of each browser session and tab, shown next to the button that was
    clicked once the event ends (a gr.Error also pops up, and API clients get it raised)."""

    def __init__(self):
        self._last: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def note(self, request: gr.Request | None, tab: str, message: str) -> None:
        """Log one line (no traceback: the user's mistake, not a crash) and keep it for the
        status line beside the button. ``request=None`` only logs."""
        log.warning("user error in %s: %s", tab, message)
        if request is None:
            return
        key = (getattr(request, "session_hash", None) or "", tab)
        with self._lock:
            if len(self._last) > 10_000:
                self._last.clear()
            self._last[key] = message

    def fail(self, request: gr.Request | None, tab: str, message: str):
        """:meth:`note` it and raise it for gradio (a pop-up; API clients get it raised)."""
        self.note(request, tab, message)
        raise gr.Error(message, print_exception=False)

    def take(self, request: gr.Request | None, tab: str) -> str:
        with self._lock:
            return self._last.pop((getattr(request, "session_hash", None) or "", tab), "")


ERRORS = _Errors()


def _named(message: str, path: str) -> str:
    """The message with the server's temporary path shown as the file's own name, and that name
    in front where the message does not already say it."""
    name = Path(path).name
    text = report.name_in_message(message, path)
    return text if name in text else f"{name}: {text}"


def _labelled(label: str, sentence: str) -> str:
    """"Photo A, the image file x.jpg is empty": the sentence after a label, its capital lowered."""
    if not label:
        return sentence
    first = sentence.split(" ", 1)[0]
    if first in ("The", "This", "It"):
        sentence = first.lower() + sentence[len(first):]
    return f"{label}, {sentence}"


def _out_dir() -> Path:
    return RETENTION.new_dir()


def _table(rows: list[list], headers: list[str] = SCORE_HEADERS, shown: list[str] | None = None):
    """The HTML table people read (cards on a phone; only the ``shown`` columns), and the whole
    rows as records for API clients."""
    keep = [headers.index(h) for h in (shown or headers)]
    role = headers.index("role")
    words = {"white-box": "attacked (white-box)", "black-box": "never attacked (black-box)"}
    html = report.score_table_html([[words.get(r[i], r[i]) if i == role else r[i] for i in keep] for r in rows],
                                   [headers[i] for i in keep])
    return html, report.rows_as_records(rows, headers)


#: No mask is involved in Check, so its table leaves out who was attacked.
CHECK_COLUMNS = ["evaluator", "metric", "score", "threshold", "verdict"]


# ------------------------------------------------------------------------------------ handlers


def preview(path: str | None, request: gr.Request = None, tab: str = "upload"):
    """The uploaded photo as faceprot reads it (EXIF orientation applied), or faceprot's own
    sentence when it cannot be read."""
    if not path:
        return None
    try:
        pic = load_image(path, max_side=SMALL_COPY_PX)  # a small copy: only shown, never protected
    except FaceprotError as e:
        ERRORS.fail(request, tab, _named(str(e), path))
    out = _out_dir() / "preview.png"
    out.write_bytes(encode_png(pic.rgb))
    return str(out)


def check_photos(photos: list[str] | None, request: gr.Request = None) -> None:
    """Apply's photos as they are uploaded, each read as a small copy: the unreadable ones named
    at once, beside the button (the readable ones will still be protected)."""
    bad = []
    for path in photos or []:
        try:
            load_image(path, max_side=SMALL_COPY_PX)
        except FaceprotError as e:
            bad.append(_named(str(e), path))
    if bad:
        if len(bad) == len(photos):
            ERRORS.fail(request, "apply", "No photo could be protected. " + " ".join(bad))
        good = len(photos) - len(bad)
        ERRORS.fail(request, "apply", " ".join(bad) + f" The other {good} photo{'s' if good > 1 else ''} "
                                                      "will be protected.")


def check(photo_a: str | None, photo_b: str | None, request: gr.Request = None, progress=gr.Progress()):
    """Check tab: do two photos show the same person, according to each recognizer?"""
    if not photo_a or not photo_b:
        ERRORS.fail(request, "check", "Please upload two photos.")
    pics = []
    progress(0.1, desc="Reading photos")
    for label, path in (("A", photo_a), ("B", photo_b)):
        try:
            pics.append(load_image(path))
        except FaceprotError as e:
            ERRORS.fail(request, "check", _labelled(f"Photo {label}", _named(str(e), path)))
    progress(0.3, desc="Detecting faces and scoring")
    try:
        scores = compare_photos(pics[0].rgb, pics[1].rgb)
    except FaceprotError as e:  # "Photo A: ..." -> "Photo A, <name>: ..."
        msg = str(e)
        for label, path in (("A", photo_a), ("B", photo_b)):
            msg = msg.replace(f"Photo {label}: ", f"Photo {label}, {Path(path).name}: ")
        ERRORS.fail(request, "check", msg)
    notes = pics[0].notices + pics[1].notices
    if notes:
        gr.Info(" ".join(notes))
    verdict = report.check_verdict(scores, Path(photo_a).name, Path(photo_b).name)
    return (verdict, *_table(report.score_rows(scores), shown=CHECK_COLUMNS))


class _UserError(gr.Error):
    """A user's mistake raised inside a GPU function. ZeroGPU hands gr.Error instances back
    from its worker as they are (other exceptions become a bare "ZeroGPU worker error"), so
    faceprot's sentence survives, and this class tells it apart from a GPU failure."""


def _gpu(duration):
    """``spaces.GPU`` with a duration estimated from each request on a Space; a no-op elsewhere."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def _enroll_seconds(selfie, strength, names, seed, generator, remember_me, *_, **__) -> int:
    """ZeroGPU time to ask for, from this request: the views (Arc2Face: 8 images x 25 steps), CUDA's
    start and the optimisation, detection and scoring. On an H200 the optimisation took 0.06 s an
    iteration after a 4.6 s first call (BENCHMARKS.md, "The cloak on a GPU"); 1 s an iteration
    leaves room for a smaller GPU slice; and 1 s a step for the selfie's refinement."""
    iterations = PRESETS.get(strength, PRESETS["medium"])["iterations"]
    views = 40 if generator == "arc2face" else 5
    return int(views + 10 + iterations + DEFAULT_REFINE + 15)


@dataclass
class _Made:
    """What one protect made, on CPU memory only (a ZeroGPU worker pickles it back)."""

    located: object
    mask: PersonalMask
    maps: dict
    n_views: int
    seconds: float
    protected: object
    scores: list


def _make_mask(selfie, strength, names, seed, generator, remember_me, device, progress) -> _Made:
    """Read and detect the selfie once, enroll, apply, score. Raises FaceprotError."""
    progress(0.0, desc="Reading the selfie")
    located = locate(load_image(selfie), "largest")  # read and detected once, passed along
    pic, face = located.picture, located.chosen[0]
    result = enroll(pic, face=face, preset=strength, seed=int(seed or 0), generator=generator,
                    surrogates=names, store_identity=bool(remember_me), device=device,
                    progress=lambda f, m: progress(0.9 * f, desc=m))
    progress(0.9, desc="Applying the mask to the selfie")
    # as *Apply my mask* applies it by default (10 refinement steps): the protected selfie a person
    # downloads, and its scores, are what they would get for any photo, not the bare universal mask
    protected = apply_mask(located, result.mask, refine=DEFAULT_REFINE, seed=int(seed or 0), device=device)
    progress(0.95, desc="Scoring before and after")
    scores = compare_photos(pic.rgb, protected.picture.rgb, surrogates=result.mask.surrogates, face_a=face)
    protected.deltas = [d.detach().cpu() for d in protected.deltas]  # a ZeroGPU worker pickles this back
    return _Made(located, result.mask, result.teaching_maps(), len(result.views.images),
                 result.seconds["total"], protected, scores)


@_gpu(_enroll_seconds)
def _make_mask_on_gpu(selfie, strength, names, seed, generator, remember_me, progress) -> _Made:
    """The GPU path: CUDA exists only in here on ZeroGPU. A user's mistake comes back as _UserError."""
    try:
        return _make_mask(selfie, strength, names, seed, generator, remember_me, "cuda", progress)
    except FaceprotError as e:
        raise _UserError(str(e), print_exception=False) from None


def _gpu_in_reach() -> bool:
    """Whether a protect should try the GPU: on a ZeroGPU Space, or where CUDA is visible."""
    if ON_ZEROGPU:
        return True
    import torch

    return torch.cuda.is_available()


def _why(e: Exception) -> str:
    title = getattr(e, "title", None)
    text = str(getattr(e, "message", "") or e)
    return f"{title}: {text}" if title and title != "Error" else text or type(e).__name__


def protect(selfie, strength, surrogates, seed, generator, remember_me, request: gr.Request = None,
            progress=gr.Progress()):
    """Protect my face: one selfie in; verdict, scores, protected selfie, mask file and maps out.

    Tries the GPU where there is one; a GPU error or an exhausted ZeroGPU quota falls back to the
    CPU (Arc2Face views to augment views), and the verdict says so."""
    if not selfie:
        ERRORS.fail(request, "protect", "Please upload a selfie.")
    names = SURROGATE_CHOICES.get(surrogates)
    if names is None:
        ERRORS.fail(request, "protect", f"Unknown choice of recognizers to attack: {surrogates!r}; "
                                         f"choose {', '.join(SURROGATE_CHOICES)}.")
    made, notes = None, []
    if _gpu_in_reach():
        try:
            made = _make_mask_on_gpu(selfie, strength, names, seed, generator, remember_me, progress)
        except _UserError as e:
            ERRORS.fail(request, "protect", _named(e.message, selfie))
        except Exception as e:  # quota, a worker error, CUDA out of memory: the CPU still works
            log.warning("GPU protect failed, falling back to the CPU: %s", _why(e))
            notes.append(f"The GPU was not available ({_why(e)}), so this mask was made on the CPU")
    elif generator == "arc2face":
        notes.append("Arc2Face views need a GPU and this server has none, so this mask was made on the CPU")
    if made is None:
        if generator == "arc2face":
            generator = "augment"
            notes[-1] += " from augment views (realistic edits of your selfie) instead of Arc2Face's"
        try:
            made = _make_mask(selfie, strength, names, seed, generator, remember_me, "cpu", progress)
        except FaceprotError as e:
            ERRORS.fail(request, "protect", _named(str(e), selfie))
    pic, face, protected = made.located.picture, made.located.chosen[0], made.protected
    out = _out_dir()
    files = {k: out / v for k, v in report.selfie_output_names(selfie).items()}
    files["original"].write_bytes(encode_png(pic))
    files["protected"].write_bytes(protected.png())
    # the close-up: the square the mask changes, before and after, so the grain is visible
    x0, y0, x1, y1 = changed_region(pic, face)
    for key, rgb in (("face-original", pic.rgb), ("face-protected", protected.picture.rgb)):
        files[key].write_bytes(encode_png(rgb[y0:y1, x0:x1].copy(), icc_profile=pic.icc_profile))
    made.mask.save(files["mask"])
    maps = [(img, name) for name, img in made.maps.items()]
    summary = report.mask_description(made.mask, made.n_views, made.seconds)
    if made.mask.identity:
        summary += " " + report.IDENTITY_STORED
    if protected.notices:
        gr.Info(" ".join(protected.notices))
    verdict = report.match_verdict(made.scores, Path(selfie).name, selfie=True, strength=strength)
    if notes:
        note = ". ".join(notes) + "."
        gr.Warning(note)
        verdict = f"**Made on the CPU.** {note}\n\n{verdict}"
    return (verdict, *_table(report.score_rows(made.scores)),
            (str(files["original"]), str(files["protected"])),
            (str(files["face-original"]), str(files["face-protected"])), str(files["mask"]), maps, summary)


def apply_tab(mask_file, photos, which, refine, request: gr.Request = None, progress=gr.Progress()):
    """Apply my mask: a mask file and photos in; a verdict per photo, scores, protected PNGs
    (zipped when several) out."""
    if not mask_file:
        ERRORS.fail(request, "apply", "Please upload your .faceprot mask file (from the 'Protect my face' tab).")
    if not photos:
        ERRORS.fail(request, "apply", "Please upload one or more photos.")
    try:
        mask = PersonalMask.load(mask_file)
    except FaceprotError as e:
        ERRORS.fail(request, "apply", report.name_in_message(str(e), mask_file))
    out = _out_dir()
    written, rows, failed, per_photo, lines = [], [], [], {}, []
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
            lines.append(report.match_verdict(scores, name))
            rows += [[name, *row] for row in report.score_rows(scores)]
        except FaceprotError as e:
            failed.append(_named(str(e), path))
            log.warning("user error in apply: %s", failed[-1])
    if not written:
        ERRORS.fail(request, "apply", "No photo could be protected. " + " ".join(failed))
    download = written[0] if len(written) == 1 else report.zip_outputs(written, out / report.ZIP_NAME)
    status = "\n\n".join(lines) + "\n\n" + report.apply_verdict(per_photo, len(photos), int(refine), failed)
    return (status, *_table(rows, ["photo", *SCORE_HEADERS]), [str(w) for w in written], str(download))


#: The disguise's targets: none (hide from recognition) or a built-in blend of three or more faces.
#: Never a single real person on a public demo: that would help frame someone.
NO_TARGET = "none: hide from face recognition"
DISGUISE_TARGETS = [NO_TARGET, *(built_in_targets.label(n) for n in built_in_targets.names())]

#: The disguise's engines: warp (the default everywhere, on the CPU) and diffusion, offered only
#: where a GPU and its weights are here. Decided once, at start-up; DIFFUSION_WHY_NOT is the
#: sentence that says why it is not offered ("" where it is).
ENGINES = ("warp", "diffusion")
DIFFUSION_WHY_NOT = diffusion.why_not_offered(gpu=_gpu_in_reach())
DIFFUSION_OFFERED = not DIFFUSION_WHY_NOT
#: Optimisation steps of a diffusion run (the engine's default); the GPU time asked for follows.
DIFFUSION_STEPS = diffusion.DiffusionConfig.steps
EXPERIMENTAL = "experimental: its quality has not been measured"
ENGINE_CHOICES = [("warp", "warp")] + ([(f"diffusion ({EXPERIMENTAL})", "diffusion")] if DIFFUSION_OFFERED else [])
ENGINE_INFO = (("warp: a landmark warp and a little noise, on the CPU (measured below). diffusion: the face "
                "edited through a diffusion model on the GPU, so the expression can change its texture too "
                f"(teeth, cheek folds); {EXPERIMENTAL}.") if DIFFUSION_OFFERED else DIFFUSION_WHY_NOT)
#: Shown before the click where a diffusion run spends the visitor's ZeroGPU quota.
QUOTA_WARNING = (f"**The diffusion engine runs on this Space's shared GPU (ZeroGPU), and an anonymous visitor's "
                 f"daily GPU quota is short** (about 2 minutes). A diffusion run asks for about "
                 f"{diffusion.gpu_duration(DIFFUSION_STEPS)} s of it for each face (an estimate, not measured). "
                 "Signing in to Hugging Face gives you more. When the quota runs out, the photo is disguised on "
                 "the CPU with the warp engine instead, and the result says so.")

if ON_ZEROGPU and DIFFUSION_OFFERED:
    GPU_MODELS_FAILED.update(_load_diffusion_models())


def _diffusion_seconds(located, emotion, embeddings, names, seed, steps, progress) -> int:
    """ZeroGPU time to ask for, from this request: the diffusion engine's estimate for one face
    (:func:`faceprot.disguise.diffusion.gpu_duration`, not measured) times the faces chosen."""
    return len(located.chosen) * diffusion.gpu_duration(steps)


@_gpu(_diffusion_seconds)
def _diffuse_on_gpu(located, emotion, embeddings, names, seed, steps, progress):
    """The diffusion engine on the faces found already (on the CPU, so that a photo without a
    face spends no GPU quota), where CUDA exists: inside this function on ZeroGPU. A user's
    mistake comes back as _UserError; a model that cannot be loaded is the GPU side's failure."""
    try:
        return diffusion.disguise(located, emotion, target=embeddings, seed=seed, surrogates=names, device="auto",
                                  steps=steps, progress=lambda f, m: progress(f, desc=m))
    except ModelUnavailableError:
        raise
    except FaceprotError as e:
        raise _UserError(str(e), print_exception=False) from None


def disguise_tab(photo, emotion, target, strength, surrogates, which, seed, me_photo=None, engine="warp",
                 request: gr.Request = None, progress=gr.Progress()):
    """Emotion disguise: a photo and an emotion in; the disguised photo, the landmark moves, and
    what face recognition and the expression judges make of it out.

    The diffusion engine runs where it is offered, on the GPU; where it is not, or where the GPU
    fails (an exhausted ZeroGPU quota), the warp engine runs on the CPU and the verdict says so."""
    engine = engine or "warp"  # a cleared choice
    if engine not in ENGINES:
        ERRORS.fail(request, "disguise", f"Unknown engine {engine!r}; choose {' or '.join(ENGINES)}.")
    if not photo:
        ERRORS.fail(request, "disguise", "Please upload a photo.")
    if emotion not in OFFERED:
        known = ", ".join(OFFERED)
        why = (f"{emotion!r} is not offered yet ({EMOTION_RULES[emotion].why})" if emotion in EMOTION_RULES
               else f"{emotion!r} is not an emotion the disguise knows")
        ERRORS.fail(request, "disguise", f"Unknown or unavailable emotion: {why}. Choose {known}.")
    if target not in DISGUISE_TARGETS:
        ERRORS.fail(request, "disguise", f"Unknown target {target!r}. The targets here are blends of several "
                                          "faces, never one real person: choose " + ", ".join(DISGUISE_TARGETS) + ".")
    names = SURROGATE_CHOICES.get(surrogates)
    if names is None:
        ERRORS.fail(request, "disguise", f"Unknown choice of recognizers to attack: {surrogates!r}; "
                                          f"choose {', '.join(SURROGATE_CHOICES)}.")
    if which not in ("largest", "all", "me"):
        ERRORS.fail(request, "disguise", f"Unknown choice of faces {which!r}; choose largest, all or me.")
    if which == "me" and not me_photo:
        ERRORS.fail(request, "disguise", "'me' disguises only your own faces in a group photo: upload a photo "
                                          "of you (More settings) for faceprot to recognise you by, or choose "
                                          "largest or all.")
    if strength not in DISGUISE_STRENGTHS:
        ERRORS.fail(request, "disguise", f"Unknown strength {strength!r}; choose {', '.join(DISGUISE_STRENGTHS)}.")
    embeddings = None if target == NO_TARGET else built_in_targets.load_target(target)
    try:
        pic = load_image(photo)
    except FaceprotError as e:
        ERRORS.fail(request, "disguise", _named(str(e), photo))
    me = None
    if which == "me":
        try:
            me = load_image(me_photo)
        except FaceprotError as e:
            ERRORS.fail(request, "disguise", _labelled("The photo of you", _named(str(e), me_photo)))
    source, result, fallback = pic, None, None
    if engine == "diffusion" and not DIFFUSION_OFFERED:
        fallback = ("Made with the warp engine", f"{DIFFUSION_WHY_NOT} This photo was disguised with the warp engine "
                                                 "instead.")
    elif engine == "diffusion":
        try:
            source = locate_faces(pic, which, me, [load_surrogate(n) for n in names] if which == "me" else ())
        except FaceprotError as e:
            ERRORS.fail(request, "disguise", _named(str(e), photo))
        try:
            result = _diffuse_on_gpu(source, emotion, embeddings, names, int(seed or 0), DIFFUSION_STEPS, progress)
        except _UserError as e:
            ERRORS.fail(request, "disguise", _named(e.message, photo))
        except Exception as e:  # quota, a worker error, CUDA out of memory: the warp engine still works
            log.warning("GPU disguise failed, falling back to the warp engine on the CPU: %s", _why(e))
            fallback = ("Made on the CPU, with the warp engine", f"The diffusion engine could not run on the GPU "
                                                                 f"({_why(e)}), so this photo was disguised on the "
                                                                 "CPU with the warp engine instead.")
    used = "warp" if result is None else "diffusion"
    try:
        if result is None:
            result = disguise_photo(source, emotion, target=embeddings, strength=strength, seed=int(seed or 0),
                                    faces=which, me=me, surrogates=names, device="cpu",
                                    progress=lambda f, m: progress(f, desc=m))
        progress(0.99, desc="Scoring the result")
        scores = score_disguise(result, pic.rgb, embeddings)
    except FaceprotError as e:
        ERRORS.fail(request, "disguise", _named(str(e), photo))
    out = _out_dir()
    stem = Path(photo).stem or "photo"
    files = {k: out / f"{stem}-{k}.png" for k in ("original", "disguised", "face-original", "face-disguised",
                                                   "warp")}
    files["original"].write_bytes(encode_png(pic))
    files["disguised"].write_bytes(result.png())
    x0, y0, x1, y1 = changed_region(pic, result.faces[0].face)
    for key, rgb in (("face-original", pic.rgb), ("face-disguised", result.picture.rgb)):
        files[key].write_bytes(encode_png(rgb[y0:y1, x0:x1].copy(), icc_profile=pic.icc_profile))
    files["warp"].write_bytes(encode_png(warp_arrows(result)))
    if result.notices:
        gr.Info(" ".join(result.notices))
    label = None if target == NO_TARGET else target
    verdict = report.disguise_verdict(scores, Path(photo).name, emotion, label)
    if fallback:
        header, note = fallback
        gr.Warning(note)
        verdict = f"**{header}.** {note}\n\n{verdict}"
    rows = report.disguise_rows(scores.self, scores.target, label or "the target")
    table = _table(rows, report.DISGUISE_HEADERS)
    expression = report.expression_rows(scores.expression)
    done = (f"Disguised {len(result.faces)} face(s) in {result.seconds['total']:.1f} s with the {used} engine; seed "
            f"{int(seed or 0)}; attacked: {', '.join(result.surrogates)}.")
    if used == "warp":
        summary = (f"{done} Strength {strength}: the added noise is at most {DISGUISE_STRENGTHS[strength] * 255:.0f} "
                   f"of 255 levels. The largest landmark move is {result.faces[0].max_move_iod:.3f} of the distance "
                   "between the eyes (the limit is 0.12); the arrows are the warp's moves, drawn 3 times longer.")
    else:
        summary = (f"{done} The diffusion engine is {EXPERIMENTAL}. It made {result.config.steps} optimisation "
                   "steps; the strength applies to the warp engine only. The arrows show where the 3-D landmark "
                   "model reads each landmark before and after the edit, drawn 3 times longer than the moves.")
    return (verdict, *table, report.score_table_html(expression, report.EXPRESSION_HEADERS),
            report.rows_as_records(expression, report.EXPRESSION_HEADERS),
            (str(files["original"]), str(files["disguised"])),
            (str(files["face-original"]), str(files["face-disguised"])), str(files["warp"]),
            str(files["disguised"]), summary)


# ------------------------------------------------------------------------------------ layout


#: The class that hides a tab's example buttons while the tab runs (style: APP_CSS), from the mouse
#: and the keyboard alike: an example clicked meanwhile would load its inputs and outputs over the
#: run's. Hidden, not removed: nothing on the page moves.
BUSY = "fp-busy"
APP_CSS = f".{BUSY} button {{ visibility: hidden; }}"


def _busy_clearing(n_outputs: int):
    """The first step of a click: the button disabled, the examples hidden, the status emptied,
    and the results of the last run cleared, so that they cannot be taken for this run's if it
    fails."""
    def busy(*_inputs):
        return gr.update(interactive=False), gr.update(elem_classes=[BUSY]), "", *([None] * n_outputs)
    return busy


def _error_line(tab: str):
    """The status line after a step of ``tab`` ended: its error, if any."""
    def line(request: gr.Request = None):
        err = ERRORS.take(request, tab)
        return f"**Error:** {err}" if err else ""
    return line


def _idle(tab: str):
    """The last step of a run, the button's or an example's: the button and the examples usable
    again, and the error, if any, in the status line."""
    line = _error_line(tab)

    def idle(request: gr.Request = None):
        return gr.update(interactive=True), gr.update(elem_classes=[]), line(request)
    return idle


def _examples(button, status, examples: list, **kwargs) -> gr.Examples:
    """``gr.Examples`` (cached lazily: an example's first click runs the tab's function) whose
    click first disables ``button``, hides the examples and clears the last results, as the
    button's click does. The browser runs a trigger's listeners in the order they were added, each
    after the last one's reply, so this step is added before gradio's own (made by ``create``,
    which ``gr.Examples`` would call at once): it is done before the example runs, and
    :func:`_wire`'s last step, which follows the run, undoes it."""
    made = gr.helpers.Examples(examples, cache_examples=True, cache_mode="lazy", _initiated_directly=False,
                               **kwargs)
    made.dataset.click(_busy_clearing(len(made.outputs)), None, [button, made.dataset, status, *made.outputs],
                       queue=False, api_name=False, show_progress="hidden")
    made.create()
    return made


def _wire(button, status, fn, inputs, outputs, api_name: str, tab: str, examples: gr.Examples, validator=None):
    """One run at a time per tab: while the button's event, or an example's first (uncached)
    run, goes on, the button is disabled and the examples are hidden (see :func:`_examples`);
    progress and the error, if any, are shown beside the button."""
    # The validator guards the first step (gradio runs validators as an event joins the queue, so
    # this step is queued, with no concurrency limit: it never waits for a worker). A photo it
    # refuses is marked on its input at once and nothing runs: the button stays usable. API
    # clients call fn, whose own checks give the same sentences.
    controls = [button, examples.dataset, status]
    run = button.click(_busy_clearing(len(outputs)), inputs, [*controls, *outputs], api_name=False,
                       validator=validator, concurrency_limit=None, show_progress="hidden").then(
        fn, inputs, outputs, api_name=api_name, show_progress_on=status)
    # the browser follows an event that failed with .failure listeners only, not .then ones; an
    # example's run is gradio's cache_event, which follows the loading of its inputs
    for follow in (run.success, run.failure, examples.cache_event.success, examples.cache_event.failure):
        follow(_idle(tab), None, controls, queue=False, api_name=False)


def _preview_for(tab: str):
    def show(path: str | None, request: gr.Request = None):
        return preview(path, request, tab)
    return show


def _example(name: str) -> str:
    return str(EXAMPLES / name)


#: Face photos that the API page shows in its examples (the face_recognition project's photos, the
#: same as examples/; see examples/README.md), in place of gradio's sample PDF.
API_EXAMPLE_PHOTOS = {
    "selfie": "https://raw.githubusercontent.com/ageitgey/face_recognition/master/examples/obama.jpg",
    "photo": "https://raw.githubusercontent.com/ageitgey/face_recognition/master/examples/obama2.jpg",
    "other": "https://raw.githubusercontent.com/ageitgey/face_recognition/master/examples/biden.jpg",
}


#: The mask file's example: the example selfie's mask, where a clone of the project has it.
API_EXAMPLE_MASK = "examples/obama-selfie.faceprot"


def _api_example(component: gr.File, example: str) -> gr.File:
    """Make ``example`` (a face photo's URL, or a path inside the project) the file the API page
    shows for ``component``, in place of gradio's sample PDF. Set on the instance: a subclass of a
    gradio component would make gradio write a type-stub file beside this one at every import."""
    def payload():
        if example.startswith("https://"):
            one = handle_file(example)
        else:  # a path relative to the project, which need not exist where the server runs
            one = {"path": example, "meta": {"_type": "gradio.FileData"}}
        return one if component.file_count == "single" else [one]

    component.example_payload = payload
    component.example_value = lambda: example if component.file_count == "single" else [example]
    return component


def _unreadable(tab: str, path: str | None, label: str = "") -> dict:
    """One input's validation: readable, judged on a small copy (fast, so a bad file is turned
    away at once and waits for nobody in the queue). The message is the handler's own sentence,
    shown on the input."""
    if path:
        try:
            load_image(path, max_side=SMALL_COPY_PX)
        except FaceprotError as e:
            message = _labelled(label, _named(str(e), path))
            ERRORS.note(None, tab, message)  # logged; the page shows it on the input
            return gr.validate(False, message)
    return gr.validate(True, "")  # a missing input: the handler says what is missing


def validate_protect(selfie, strength, surrogates, seed, generator, remember_me):
    return [_unreadable("protect", selfie)] + [gr.validate(True, "")] * 5


def validate_apply(mask_file, photos, which, refine):
    """Several photos: refused only when none can be read. One bad photo among good ones is
    reported after the good ones are protected, so nothing is lost."""
    checks = [_unreadable("apply", p) for p in (photos or [])]
    if checks and not any(c["is_valid"] for c in checks):
        message = "No photo could be protected. " + " ".join(c["message"] for c in checks)
        return [gr.validate(True, ""), gr.validate(False, message), gr.validate(True, ""), gr.validate(True, "")]
    return [gr.validate(True, "")] * 4


def validate_disguise(photo, emotion, target, strength, surrogates, which, seed, me_photo, engine):
    return ([_unreadable("disguise", photo)] + [gr.validate(True, "")] * 6
            + [_unreadable("disguise", me_photo, "The photo of you") if which == "me" else gr.validate(True, ""),
               gr.validate(True, "")])


def validate_check(photo_a, photo_b):
    return [_unreadable("check", photo_a, "Photo A"), _unreadable("check", photo_b, "Photo B")]


with gr.Blocks(title="faceprot", analytics_enabled=False,
               delete_cache=(max(1, round(RETENTION.frequency)), max(1, round(RETENTION.ttl)))) as demo:
    gr.Markdown(INTRO)
    with gr.Accordion("What this can and cannot do", open=False):
        gr.Markdown(LIMITS + "\n\n" + report.recognizers_note())
    with gr.Accordion(f"Privacy: your photos and results are deleted {describe_duration(RETENTION.ttl)} "
                      "after they are made", open=False, elem_id="privacy"):
        gr.Markdown(PRIVACY)

    with gr.Tab("Protect my face"):
        # outputs first (not yet shown), so that the examples can sit beside the upload
        protect_verdict = gr.Markdown(render=False)
        protect_table = gr.HTML(css_template=report.TABLE_CSS, render=False)
        protect_records = gr.JSON(visible=False, render=False)
        slider = gr.ImageSlider(label="Original (left) / protected (right)", type="filepath", format="png",
                                render=False)
        closeup = gr.ImageSlider(label="Close-up of the part that changes", type="filepath", format="png",
                                 render=False)
        mask_out = gr.File(label=MASK_FILE_NOTE, render=False)
        protect_summary = gr.Markdown(render=False)
        maps = gr.Gallery(label="How the mask was made", columns=4, format="png", height="auto",
                          render=False)
        with gr.Row():
            with gr.Column():
                selfie = _api_example(gr.File(label="Your selfie (any photo format)", type="filepath"),
                                      API_EXAMPLE_PHOTOS["selfie"])
                selfie_view = gr.Image(label="Your selfie as faceprot reads it", interactive=False,
                                       format="png", height=240)
                strength = gr.Radio([*STRENGTHS, "paper"], value="medium", label="Strength",
                                    info=STRENGTH_INFO)
                attack = gr.Radio(list(SURROGATE_CHOICES), value="dlib + MobileFaceNet",
                                  label="Recognizers to attack",
                                  info="The ones left out are scored as never-attacked: see whether "
                                       "protection carries over to a recognizer the mask never saw.")
                with gr.Accordion("More settings", open=False):
                    seed = gr.Number(value=0, precision=0, label="Seed (same selfie + seed = same mask)")
                    generator = gr.Radio(["augment", "arc2face"], value="augment", label="Views",
                                         info="augment: realistic edits of your selfie (CPU). arc2face: "
                                              "synthetic photos of you (GPU and Hub weights needed).")
                    remember = gr.Checkbox(False, label="Store my face embedding in the mask",
                                           info="Lets 'Apply my mask' protect only you in group photos. "
                                                "Off by default: the file then stores no embedding of your face.")
                protect_btn = gr.Button("Protect", variant="primary")
                protect_status = gr.Markdown()
                protect_inputs = [selfie, strength, attack, seed, generator, remember]
                protect_outputs = [protect_verdict, protect_table, protect_records, slider, closeup, mask_out,
                                   maps, protect_summary]
                protect_examples = _examples(
                    protect_btn, protect_status,
                    [[_example("obama-selfie.jpg"), "medium", "dlib + MobileFaceNet", 0, "augment", False],
                     [_example("obama-selfie.jpg"), "medium", "dlib only", 0, "augment", False]],
                    inputs=protect_inputs, outputs=protect_outputs, fn=protect,
                    label="Try an example (\"dlib only\" leaves MobileFaceNet never attacked)",
                    example_labels=["Obama, attack both", "Obama, attack dlib only"])
            with gr.Column():
                for c in (protect_verdict, protect_table, protect_records, slider, closeup, mask_out,
                          protect_summary):
                    c.render()
        gr.Markdown("**How the mask was made**, in four pictures: where it may change more (its budget: "
                    "most in texture such as hair, brows and skin grain, least on smooth skin), the eyes it "
                    "keeps nearly still, where it chose to act (attention), and the mask itself, amplified. "
                    "With *paper*, the first two are the eyes, nose and mouth stickers and the fine edges, "
                    "where the paper's box allows twice the change.")
        maps.render()
        with gr.Accordion("How strong, and how visible?", open=False):
            gr.Markdown(STRENGTH_HELP)
            with gr.Row():
                for look in ("original", *STRENGTHS, "paper"):
                    gr.Image(str(EXAMPLES / "strengths" / f"{look}.png"), label=look, interactive=False,
                             format="png", height=200)
        _wire(protect_btn, protect_status, protect, protect_inputs, protect_outputs, "protect", "protect",
              protect_examples, validator=validate_protect)
        shown = selfie.change(_preview_for("protect"), selfie, selfie_view, api_name=False,
                              show_progress_on=protect_status)
        shown.failure(_error_line("protect"), None, protect_status, queue=False, api_name=False)
        shown.success(lambda: "", None, protect_status, queue=False, api_name=False)  # an old error goes

    with gr.Tab("Apply my mask"):
        gr.Markdown("Protect new photos of yourself with your saved mask. Only each protected face "
                    "changes: with low, medium and high the head (face, forehead and hair), with paper "
                    "and masks made before cloak v2's head-only budget a square around it, background "
                    "included, where the cloak's grain can show. Every other pixel is left exactly as "
                    "it was. Outputs are lossless PNG.")
        apply_verdict = gr.Markdown(render=False)
        apply_table = gr.HTML(css_template=report.TABLE_CSS, render=False)
        apply_records = gr.JSON(visible=False, render=False)
        gallery = gr.Gallery(label="Protected photos", format="png", columns=3, height=360,
                             object_fit="contain", render=False)  # whole photos, faces not cropped off
        download = gr.File(label="Download (a zip when there are several)", render=False)
        with gr.Row():
            with gr.Column():
                mask_in = _api_example(gr.File(label="Your mask file (.faceprot)", type="filepath"), API_EXAMPLE_MASK)
                photos_in = _api_example(gr.File(label="Photos", file_count="multiple", type="filepath"),
                                         API_EXAMPLE_PHOTOS["photo"])
                which = gr.Radio(["largest", "all", "me"], value="largest", label="Faces to protect",
                                 info="'me' needs a mask made with 'Store my face embedding' ticked "
                                      "(Protect my face, More settings).")
                refine = gr.Slider(0, 10, value=DEFAULT_REFINE, step=1, label="Per-photo refinement steps",
                                   info="0: your mask as it is (instant), the same on every photo, so "
                                        "whoever has one original and protected pair can estimate it "
                                        "and strip it from the rest. 10: each photo gets its own cloak "
                                        "that keeps protecting after such stripping (about 1 s per face).")
                apply_btn = gr.Button("Apply", variant="primary")
                apply_status = gr.Markdown()
                apply_inputs = [mask_in, photos_in, which, refine]
                apply_outputs = [apply_verdict, apply_table, apply_records, gallery, download]
                apply_examples = _examples(
                    apply_btn, apply_status,
                    [[_example("obama-selfie.faceprot"), [_example("obama-1.jpg"), _example("obama-2.jpg")],
                      "largest", 10]],
                    inputs=apply_inputs, outputs=apply_outputs, fn=apply_tab,
                    label="Try an example: the example selfie's mask (medium, seed 0) on two other photos",
                    example_labels=["Obama's mask on two photos"])
            with gr.Column():
                for c in apply_outputs:
                    c.render()
        _wire(apply_btn, apply_status, apply_tab, apply_inputs, apply_outputs, "apply", "apply", apply_examples,
              validator=validate_apply)
        checked = photos_in.change(check_photos, photos_in, None, api_name=False, show_progress_on=apply_status)
        checked.failure(_error_line("apply"), None, apply_status, queue=False, api_name=False)
        checked.success(lambda: "", None, apply_status, queue=False, api_name=False)  # an old error goes

    with gr.Tab("Emotion disguise"):
        gr.Markdown(DISGUISE_INTRO)
        disguise_verdict = gr.Markdown(render=False)
        disguise_table = gr.HTML(css_template=report.TABLE_CSS, render=False)
        disguise_records = gr.JSON(visible=False, render=False)
        expression_table = gr.HTML(css_template=report.TABLE_CSS, render=False)
        expression_records = gr.JSON(visible=False, render=False)
        disguise_slider = gr.ImageSlider(label="Original (left) / disguised (right)", type="filepath",
                                         format="png", render=False)
        disguise_closeup = gr.ImageSlider(label="Close-up of the part that changes", type="filepath",
                                          format="png", render=False)
        arrows = gr.Image(label="Where each landmark moved (arrows 3x longer)", type="filepath", format="png",
                          interactive=False, render=False)
        disguise_file = gr.File(label="Download the disguised photo (lossless PNG)", render=False)
        disguise_summary = gr.Markdown(render=False)
        with gr.Row():
            with gr.Column():
                disguise_in = _api_example(gr.File(label="Your photo (any photo format)", type="filepath"),
                                           API_EXAMPLE_PHOTOS["photo"])
                disguise_view = gr.Image(label="Your photo as faceprot reads it", interactive=False, format="png",
                                         height=240)
                # Dropdowns that accept any value, so that an API call with an unknown emotion or target
                # gets faceprot's sentence rather than gradio's list check
                emotion = gr.Dropdown(list(OFFERED), value=OFFERED[0], label="Emotion", info=EMOTION_INFO,
                                      allow_custom_value=True)
                target = gr.Dropdown(DISGUISE_TARGETS, value=NO_TARGET, label="Target", allow_custom_value=True,
                                     info="none: face recognition should no longer match you. A blend: it "
                                          "should match you to a blend of 3 or 4 faces, which is nobody real.")
                disguise_strength = gr.Radio(list(DISGUISE_STRENGTHS), value="medium", label="Strength",
                                             info="How much noise may be added on top of the warp: low 2, "
                                                  "medium 4, high 8 of 255 levels.")
                # Any value accepted, as above: an API call asking for an engine not offered here gets
                # faceprot's sentence, not gradio's list check
                disguise_engine = gr.Dropdown(ENGINE_CHOICES, value="warp", label="Engine", info=ENGINE_INFO,
                                              allow_custom_value=True)
                if ON_ZEROGPU and DIFFUSION_OFFERED:
                    gr.Markdown(QUOTA_WARNING)
                with gr.Accordion("More settings", open=False):
                    disguise_attack = gr.Radio(list(SURROGATE_CHOICES), value="dlib + MobileFaceNet",
                                               label="Recognizers to attack",
                                               info="The ones left out are scored as never-attacked.")
                    disguise_faces = gr.Radio(["largest", "all", "me"], value="largest", label="Faces to disguise",
                                              info="'me': only the faces that match the photo of you below.")
                    disguise_me = _api_example(gr.File(label="A photo of you (only for 'me')", type="filepath"),
                                               API_EXAMPLE_PHOTOS["selfie"])
                    disguise_seed = gr.Number(value=0, precision=0, label="Seed (same photo + seed = same result)")
                disguise_btn = gr.Button("Disguise", variant="primary")
                disguise_status = gr.Markdown()
                disguise_inputs = [disguise_in, emotion, target, disguise_strength, disguise_attack,
                                   disguise_faces, disguise_seed, disguise_me, disguise_engine]
                disguise_outputs = [disguise_verdict, disguise_table, disguise_records, expression_table,
                                    expression_records, disguise_slider, disguise_closeup, arrows, disguise_file,
                                    disguise_summary]
                # the photo of you and the engine left out (none, and warp: the defaults): gradio 6.31
                # loads an example with an empty file column one value short, and the click fails
                disguise_examples = _examples(
                    disguise_btn, disguise_status,
                    [[_example("obama-2.jpg"), OFFERED[0], NO_TARGET, "medium", "dlib + MobileFaceNet", "largest", 0]],
                    inputs=disguise_inputs[:7], outputs=disguise_outputs, fn=disguise_tab, label="Try an example",
                    example_labels=["Obama, happy, hide"])
            with gr.Column():
                for c in (disguise_verdict, disguise_table, disguise_records):
                    c.render()
                gr.Markdown("**The expression**, read before and after by each judge:")
                for c in (expression_table, expression_records, disguise_slider, disguise_closeup, arrows,
                          disguise_file, disguise_summary):
                    c.render()
        with gr.Accordion("How well does it work?", open=False):
            gr.Markdown(DISGUISE_MEASURED)
        _wire(disguise_btn, disguise_status, disguise_tab, disguise_inputs, disguise_outputs, "disguise",
              "disguise", disguise_examples, validator=validate_disguise)
        shown = disguise_in.change(_preview_for("disguise"), disguise_in, disguise_view, api_name=False,
                                   show_progress_on=disguise_status)
        shown.failure(_error_line("disguise"), None, disguise_status, queue=False, api_name=False)
        shown.success(lambda: "", None, disguise_status, queue=False, api_name=False)

    with gr.Tab("Check"):
        gr.Markdown("Upload two photos. Each recognizer says whether they show the same person. "
                    "Use it on a protected copy and another photo of you to see what a face search "
                    "would conclude.")
        check_verdict = gr.Markdown(render=False)
        check_table = gr.HTML(css_template=report.TABLE_CSS, render=False)
        check_records = gr.JSON(visible=False, render=False)
        check_outputs = [check_verdict, check_table, check_records]
        with gr.Row():
            with gr.Column():
                photo_a = _api_example(gr.File(label="Photo A", type="filepath"), API_EXAMPLE_PHOTOS["photo"])
                view_a = gr.Image(label="Photo A as faceprot reads it", interactive=False, format="png", height=200)
            with gr.Column():
                photo_b = _api_example(gr.File(label="Photo B", type="filepath"), API_EXAMPLE_PHOTOS["other"])
                view_b = gr.Image(label="Photo B as faceprot reads it", interactive=False, format="png", height=200)
        check_btn = gr.Button("Compare", variant="primary")
        check_status = gr.Markdown()
        check_examples = _examples(check_btn, check_status,
                                   [[_example("obama-1.jpg"), _example("obama-2.jpg")],
                                    [_example("obama-1.jpg"), _example("biden.jpg")]],
                                   inputs=[photo_a, photo_b], outputs=check_outputs, fn=check,
                                   label="Try an example", example_labels=["Two photos of Obama", "Obama and Biden"])
        for c in check_outputs:
            c.render()
        _wire(check_btn, check_status, check, [photo_a, photo_b], check_outputs, "check", "check", check_examples,
              validator=validate_check)
        for photo, view in ((photo_a, view_a), (photo_b, view_b)):
            shown = photo.change(_preview_for("check"), photo, view, api_name=False, show_progress_on=check_status)
            shown.failure(_error_line("check"), None, check_status, queue=False, api_name=False)
            shown.success(lambda: "", None, check_status, queue=False, api_name=False)


def _keep_the_shipped_files(blocks: gr.Blocks) -> list[Path]:
    """The examples and page images that gradio copied into this run's uploads while the page was
    built: exempt from both sweeps. Gradio's own delete_cache skips what a component lists in
    ``keep_in_cache``, and it would otherwise delete the examples' inputs after the TTL (and when a
    server closes), leaving example buttons that fail."""
    built = sorted(p for p in RETENTION.uploads.rglob("*") if p.is_file())
    datasets = [b for b in blocks.blocks.values() if isinstance(b, gr.Dataset)]
    datasets[0].keep_in_cache.update(str(p) for p in built)
    RETENTION.keep(built)
    return built


SHIPPED_FILES = _keep_the_shipped_files(demo)

#: The visitor's own system fonts: gradio's bundled Source Sans has few bold glyphs (bold text
#: mixed two fonts), and nothing has to be fetched.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


def serve(**launch_kwargs):
    """Queue and launch the demo as it runs in public: a bounded queue, an upload cap, no
    monitoring page or usage statistics, and the retention sweeper running."""
    RETENTION.start_sweeper()
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    settings = dict(max_file_size=f"{MAX_UPLOAD_MB:g}mb", enable_monitoring=False,
                    footer_links=["api", "gradio"], theme=THEME, css=APP_CSS)
    return demo.launch(**{**settings, **launch_kwargs})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # a Space stops its container with SIGTERM: exit cleanly, so that this run's files are deleted
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve()
