"""The Gradio app, driven through gradio_client against a launched server."""

from __future__ import annotations

import socket

import numpy as np
import pytest

gradio = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client():
    import app

    app.demo.queue().launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True,
                            quiet=True)
    try:
        yield Client(app.demo.local_url, verbose=False)
    finally:
        app.demo.close()


def test_every_image_component_is_lossless_png():
    import app

    images = [b for b in app.demo.blocks.values() if isinstance(b, (gradio.Image, gradio.ImageSlider))]
    assert images
    assert all(b.format == "png" for b in images), [(b.label, b.format) for b in images]


def test_check_tab_scores_two_photos(client, photos_manifest):
    obama = [e["path"] for e in photos_manifest if e["identity"] == "obama"]
    biden = next(e["path"] for e in photos_manifest if e["identity"] == "biden")
    same = client.predict(handle_file(obama[0]), handle_file(obama[2]), api_name="/check")
    rows = same["data"]
    headers = same["headers"]
    assert headers[:6] == ["evaluator", "role", "metric", "score", "threshold", "verdict"]
    by = {r[0]: dict(zip(headers, r)) for r in rows}
    assert {"dlib-cpp", "dlib-resnet", "mobilefacenet"} <= set(by)
    assert all(r["verdict"] == "match" for r in by.values())
    assert by["dlib-resnet"]["role"] == "white-box" and by["dlib-cpp"]["role"] == "black-box"
    diff = client.predict(handle_file(obama[0]), handle_file(biden), api_name="/check")
    assert all(r[5] == "no match" for r in diff["data"])
    assert all(isinstance(r[3], (int, float)) and np.isfinite(r[3]) for r in diff["data"])


def test_check_tab_explains_a_photo_without_a_face(client, tmp_path, photos_manifest):
    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 300, 3), 180, np.uint8)).save(blank)
    with pytest.raises(Exception) as e:
        client.predict(handle_file(str(blank)), handle_file(photos_manifest[0]["path"]), api_name="/check")
    assert "No face was found" in str(e.value)
