"""faceprot's Gradio demo: a thin shell over the ``faceprot`` package.

    python app.py            # serves on http://127.0.0.1:7860 (GRADIO_SERVER_* env vars apply)
"""

from __future__ import annotations

try:  # on a ZeroGPU Space `spaces` must be imported before torch initialises CUDA
    import spaces  # noqa: F401
except ImportError:  # pragma: no cover - optional outside Spaces
    spaces = None

import gradio as gr

from faceprot.errors import FaceprotError
from faceprot.evaluators import compare_photos
from faceprot.io import load_image
from faceprot.runtime import configure_threads

configure_threads()

SCORE_HEADERS = ["evaluator", "role", "metric", "score", "threshold", "verdict", "note"]

INTRO = """
# faceprot
Protect your face photos from face recognition, and see honestly how much protection you get.
Scores come from several recognizers: **white-box** ones were attacked during protection,
**black-box** ones were not (they show whether protection transfers).
"""


def _score_rows(scores) -> list[list]:
    rows = []
    for s in scores:
        op = "<" if s.metric == "l2" else ">="
        rows.append([s.evaluator, s.role, "L2 distance" if s.metric == "l2" else "cosine",
                     None if s.score is None else round(s.score, 3), f"{op} {s.threshold:.3f}",
                     s.verdict(), s.note])
    return rows


def check(photo_a: str | None, photo_b: str | None, progress=gr.Progress()):
    """Check tab: do two photos show the same person, according to each recognizer?"""
    if not photo_a or not photo_b:
        raise gr.Error("Please upload two photos.")
    try:
        progress(0.1, desc="Reading photos")
        a, b = load_image(photo_a), load_image(photo_b)
        progress(0.3, desc="Detecting faces and scoring")
        scores = compare_photos(a.rgb, b.rgb)
    except FaceprotError as e:
        raise gr.Error(str(e)) from None
    notes = a.notices + b.notices
    if notes:
        gr.Info(" ".join(notes))
    return _score_rows(scores)


with gr.Blocks(title="faceprot") as demo:
    gr.Markdown(INTRO)
    with gr.Tab("Check"):
        gr.Markdown("Upload two photos. Each recognizer says whether they show the same person.")
        with gr.Row():
            # format="png" everywhere: Gradio's default webp is lossy and would erase a cloak.
            photo_a = gr.Image(label="Photo A", type="filepath", format="png", height=320)
            photo_b = gr.Image(label="Photo B", type="filepath", format="png", height=320)
        check_btn = gr.Button("Compare", variant="primary")
        check_table = gr.Dataframe(headers=SCORE_HEADERS, label="Face recognition scores",
                                   interactive=False, wrap=True)
        check_btn.click(check, [photo_a, photo_b], check_table, api_name="check")


if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1).launch()
