"""The demo in public: files kept no longer than promised, a bounded queue, an upload cap, no
usage statistics, and ZeroGPU failures that fall back to the CPU.

Servers that must be restarted, or run with settings other than the defaults, run as
``python app.py`` in a subprocess, exactly as on a Space.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")

from faceprot.retention import Retention, describe_duration  # noqa: E402

EXAMPLES = ROOT / "examples"
MASK = EXAMPLES / "obama-selfie.faceprot"


# ------------------------------------------------------------------------------------ retention


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".lock")


def test_a_sweep_deletes_files_older_than_the_ttl_and_keeps_the_rest(tmp_path):
    r = Retention(root=tmp_path / "data", ttl=100)
    run = r.start()
    old_upload = r.uploads / "abc" / "selfie.jpg"
    old_upload.parent.mkdir()
    old_upload.write_bytes(b"x")
    out = r.new_dir()
    (out / "protected.png").write_bytes(b"y")
    now = time.time()
    fresh = r.new_dir()  # a request's folder before its first file is written
    assert r.sweep(now=now + 50) == [] and len(_files(run)) == 2  # younger than the TTL: kept
    assert fresh.is_dir(), "a request's fresh folder was swept away before it was written to"
    gone = r.sweep(now=now + 101)
    assert sorted(gone) == sorted([old_upload, out / "protected.png"])
    assert _files(run) == []
    assert not old_upload.parent.exists() and not out.exists()  # emptied folders go too
    assert (run / ".lock").exists() and r.uploads.is_dir() and r.outputs.is_dir()
    r.close()
    assert not run.exists()


def test_a_sweep_never_enters_the_exempt_example_cache(tmp_path):
    cache = tmp_path / "data" / "examples-cache"
    r = Retention(root=tmp_path / "data", ttl=1, exempt=[cache])
    r.start()
    inside = r.uploads / "cached" / "result.png"  # the example cache, placed inside the run
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"z")
    r2 = Retention(root=tmp_path / "data", ttl=1, exempt=[inside.parent])
    r2.run = r.run
    other = r.new_dir() / "result.png"
    other.write_bytes(b"w")
    r2.sweep(now=time.time() + 10)
    assert inside.exists() and not other.exists()
    r.close()


_HOLD_A_RUN = textwrap.dedent("""
    import os, sys, time
    from faceprot.retention import Retention
    r = Retention(root=sys.argv[1], ttl=3600)
    print(r.start(), flush=True)
    if sys.argv[2] == "crash":
        os._exit(0)  # no clean-up at all, as in a crash or kill -9
    time.sleep(120)
""")


def test_a_new_server_deletes_the_folders_of_servers_that_are_gone_and_keeps_live_ones(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    live = subprocess.Popen([sys.executable, "-c", _HOLD_A_RUN, str(tmp_path), "live"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        live_run = Path(live.stdout.readline().strip())
        crashed = subprocess.run([sys.executable, "-c", _HOLD_A_RUN, str(tmp_path), "crash"], env=env,
                                 capture_output=True, text=True, check=True)
        dead_run = Path(crashed.stdout.strip())
        (dead_run / "outputs" / "left-behind.png").write_bytes(b"x")
        assert dead_run.exists() and live_run.exists()  # the crashed one's start kept the live one
        r = Retention(root=tmp_path, ttl=3600)
        r.start()
        assert not dead_run.exists(), "a crashed server's files survived a new start"
        assert live_run.exists(), "a running server's folder was deleted"
        r.close()
    finally:
        live.kill()
        live.wait()


def test_durations_read_as_words():
    assert describe_duration(3600) == "1 hour"
    assert describe_duration(7200) == "2 hours"
    assert describe_duration(90) == "90 seconds"
    assert describe_duration(600) == "10 minutes"
    assert describe_duration(86400) == "1 day"


# ------------------------------------------------------------------------------------ a real server


class Server:
    """``python app.py`` in a subprocess, with its own data folder and settings."""

    def __init__(self, data: Path, port: int | None = None, **env):
        self.data, self.port = data, port or free_port()
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "FACEPROT_DATA_DIR": str(data),
                    "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
                    "GRADIO_EXAMPLES_CACHE": str(data.parent / "examples-cache"),
                    **{k: str(v) for k, v in env.items()}}
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> Server:
        self.log = open(self.data.parent / f"server-{self.port}-{time.time():.0f}.log", "w")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, self.tail()
            try:
                if httpx.get(self.url + "/gradio_api/info", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("the server did not come up in 180 s\n" + self.tail())

    def tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def kill(self) -> None:
        """As a crash does: no clean shutdown, no clean-up."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def _shipped_names() -> set[str]:
    return {p.name for p in EXAMPLES.rglob("*") if p.is_file()}


def _apply_once(url: str, photo: Path = EXAMPLES / "obama-1.jpg", refine: int = 0, download: bool = True):
    """One /apply call. With ``download=False`` file outputs stay on the server: their records
    carry the server's path and URL."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=download)
    return client.predict(handle_file(str(MASK)), [handle_file(str(photo))], "largest", refine, api_name="/apply")


def _at_once(n: int, url: str, *args) -> tuple[list, list, list]:
    """``n`` /apply calls sent together: (the verdicts of those done, the queue-full refusals,
    anything else that went wrong)."""
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(_apply_once, url, *args) for _ in range(n)]
        outcomes = []
        for f in futures:
            try:
                outcomes.append(("done", f.result()[0]))
            except Exception as e:  # noqa: BLE001 - sorted below, anything else fails
                outcomes.append((type(e).__name__, str(e)))
    done = [text for kind, text in outcomes if kind == "done"]
    full = [text for kind, text in outcomes if kind != "done" and "Queue is full" in text]
    others = [o for o in outcomes if o[0] != "done" and "Queue is full" not in o[1]]
    return done, full, others


def _served(url: str) -> tuple[str, str]:
    """(server path, URL) of the protected photo that one /apply call made."""
    *_, download = _apply_once(url, download=False)
    return download["path"], download["url"]


@pytest.mark.slow
def test_results_cannot_be_fetched_after_their_ttl_nor_after_a_restart(tmp_path):
    data = tmp_path / "data"
    ttl = 8
    server = Server(data, FACEPROT_TTL_SECONDS=ttl).start()
    shipped = _files(data)  # the examples and page images gradio copied when the page was built
    assert shipped and {p.name for p in shipped} <= _shipped_names()
    try:
        result, url = _served(server.url)
        got = httpx.get(url)
        assert got.status_code == 200 and got.content.startswith(b"\x89PNG"), got.status_code
        assert any(p.suffix == ".jpg" for p in _files(data)), "the upload was not where the notice says"
        assert any(p.name.endswith(".png") and "outputs" in p.parts for p in _files(data))
        # after the TTL (and a sweep), nothing uploaded or produced is left, and the link is dead;
        # the shipped examples stay, or their buttons would fail from then on
        time.sleep(ttl + 4)
        assert httpx.get(url).status_code in (403, 404)
        assert _files(data) == shipped, f"left on disk after the TTL: {set(_files(data)) - set(shipped)}"

        # a result made just before a crash is gone once the server is back
        result, url = _served(server.url)
        assert httpx.get(url).status_code == 200
        server.kill()
        assert Path(result).exists()  # the crash left it behind
        server = Server(data, port=server.port, FACEPROT_TTL_SECONDS=ttl).start()
        assert httpx.get(url).status_code in (403, 404)
        assert not Path(result).exists(), "a restart left the last run's results on disk"
        assert all(".lock" == p.name or p.is_dir() for p in data.rglob("*") if "run-" in str(p)
                   and str(server.proc.pid) not in str(p)), list(data.rglob("*"))
    finally:
        server.stop()
    assert _files(data) == [] and not any(data.glob("run-*")), "a clean stop left files behind"


@pytest.mark.slow
def test_a_full_queue_turns_requests_away_and_the_upload_cap_holds(tmp_path):
    """1 worker and a queue of 5: of 12 requests sent at once, at most 6 can be taken (one
    running, five waiting); the rest get the queue-full answer, and the server stays up."""
    server = Server(tmp_path / "data", FACEPROT_CONCURRENCY=1, FACEPROT_QUEUE_SIZE=5,
                    FACEPROT_MAX_UPLOAD_MB=2).start()
    try:
        done, full, others = _at_once(12, server.url, EXAMPLES / "obama-2.jpg", 10)
        print(f"12 clients, 1 worker, a queue of 5: {len(done)} done, {len(full)} told the queue is full")
        assert not others, others
        assert full, "12 requests at once never filled a queue of 5"
        assert len(done) >= 6, outcomes  # the running one and the five that waited
        assert all("Mask applied to 1 of 1 photo(s)" in text for text in done)
        assert server.proc.poll() is None

        # an upload over the cap is refused by the server before anything reads it
        big = tmp_path / "big.png"
        big.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2_200_000))  # over 2 MiB; the mask is 1 MB
        with open(big, "rb") as f:
            got = httpx.post(server.url + "/gradio_api/upload", files={"files": ("big.png", f)})
        assert got.status_code == 413, got.status_code
        assert not any(p.name == "big.png" for p in _files(tmp_path / "data"))
        with pytest.raises(ValueError, match="big.png exceeds the maximum file size of 2097152 bytes"):
            _apply_once(server.url, big)  # gradio_client checks the cap before it uploads
        assert _apply_once(server.url)[0].startswith("On obama-1.jpg")  # and it still works
    finally:
        server.stop()


# ------------------------------------------------------------------------------------ in-process


@pytest.fixture(scope="module")
def server_url(app_url):
    return app_url.rstrip("/")


@pytest.fixture(scope="module")
def app_module(app_url):
    import app

    return app


@pytest.mark.slow
def test_twenty_clients_at_once_each_get_a_result_or_the_queue_full_answer(server_url, app_module):
    done, full, others = _at_once(20, server_url)
    print(f"20 clients at once: {len(done)} done, {len(full)} told the queue is full")
    assert not others and len(done) + len(full) == 20, others
    assert len(done) >= app_module.QUEUE_SIZE, outcomes  # the queue takes at least its size
    assert all(text.startswith("On obama-1.jpg") for text in done)
    assert httpx.get(server_url + "/gradio_api/info").status_code == 200  # still up


def test_the_public_settings_are_in_force(server_url, app_module):
    app = app_module
    assert app.demo.analytics_enabled is False
    assert app.demo.delete_cache == (round(app.RETENTION.frequency), round(app.RETENTION.ttl))
    assert app.demo._queue.max_size == app.QUEUE_SIZE
    assert app.demo.max_file_size == int(app.MAX_UPLOAD_MB * 2**20)  # gradio reads "mb" as MiB
    # uploads and results go to this run's folder, which the sweeper empties
    assert os.environ["GRADIO_TEMP_DIR"] == str(app.RETENTION.uploads)
    assert app.RETENTION._thread is not None and app.RETENTION._thread.is_alive()
    # no usage statistics for visitors: the monitoring summary the API page reads is closed
    assert httpx.get(server_url + "/monitoring/summary").status_code == 403
    config = httpx.get(server_url + "/config").json()
    assert "settings" not in config["footer_links"]
    assert not [c for c in config["components"] if "flag" in json.dumps(c.get("props", {}).get("value", "")).lower()]


def test_the_shipped_examples_are_the_only_files_exempt_from_the_sweeps(app_module, tmp_path):
    app = app_module
    kept = {Path(p) for p in app.SHIPPED_FILES}
    assert kept and {p.name for p in kept} <= _shipped_names()
    assert all(p.is_file() and app.RETENTION.uploads in p.parents for p in kept)
    assert kept <= app.RETENTION.kept
    datasets = [b for b in app.demo.blocks.values() if b.__class__.__name__ == "Dataset"]
    assert {str(p) for p in kept} <= set().union(*(d.keep_in_cache for d in datasets))
    # the example cache is exempt by name; a user's file beside the shipped ones is not
    assert app.EXAMPLE_CACHE in app.RETENTION.exempt
    user = app.RETENTION.new_dir() / "selfie.png"
    user.write_bytes(b"x")
    gone = app.RETENTION.sweep(now=time.time() + app.RETENTION.ttl + 1)
    assert user in gone and not kept & set(gone) and all(p.exists() for p in kept)


def test_the_privacy_notice_says_what_is_kept_where_and_for_how_long(app_module):
    text = app_module.PRIVACY
    assert f"deleted {describe_duration(app_module.RETENTION.ttl)} after it was made" in text
    assert "temporary folder" in text and "server stops or restarts" in text
    assert "no usage statistics" in text and "one line for each error" in text


def test_the_api_page_shows_face_photos_as_examples(server_url):
    info = httpx.get(server_url + "/gradio_api/info").json()["named_endpoints"]
    examples = {name: [p["example_input"] for p in e["parameters"]] for name, e in info.items()}
    flat = json.dumps(examples)
    assert "sample_file.pdf" not in flat
    assert examples["/protect"][0]["url"].endswith("/obama.jpg")
    assert examples["/apply"][0]["path"] == "examples/obama-selfie.faceprot"
    assert (ROOT / examples["/apply"][0]["path"]).is_file()
    assert examples["/apply"][1][0]["url"].endswith("/obama2.jpg")
    assert [e["url"].rsplit("/", 1)[1] for e in examples["/check"]] == ["obama2.jpg", "biden.jpg"]
    # /disguise: the photo, and (for "me") a photo of the same person
    assert examples["/disguise"][0]["url"].endswith("/obama2.jpg")
    assert examples["/disguise"][7]["url"].endswith("/obama.jpg")


def test_previews_and_validators_read_a_small_copy(app_module, tmp_path):
    import numpy as np
    from PIL import Image

    big = tmp_path / "big-photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (2400, 3000, 3), np.uint8)).save(big)
    preview = app_module.preview(str(big))
    assert max(Image.open(preview).size) == app_module.SMALL_COPY_PX
    assert app_module.validate_check(str(big), str(big)) == [{"__type__": "validate", "is_valid": True, "message": ""}] * 2
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(big.read_bytes()[: 4000])
    verdict = app_module.validate_check(str(big), str(cut))[1]
    assert verdict["is_valid"] is False and verdict["message"].startswith("Photo B, cut.jpg")
    assert "truncated or damaged" in verdict["message"]
    # among several photos, one bad photo does not stop the good ones: only all bad is refused
    ok = app_module.validate_apply(str(MASK), [str(big), str(cut)], "largest", 0)
    assert all(v["is_valid"] for v in ok)
    bad = app_module.validate_apply(str(MASK), [str(cut)], "largest", 0)[1]
    assert bad["is_valid"] is False and bad["message"].startswith("No photo could be protected. cut.jpg")


# ------------------------------------------------------------------------------------ ZeroGPU

_FAKE_SPACES = textwrap.dedent('''
    """A stand-in for the `spaces` package: records each GPU call's requested duration, then
    either raises as an exhausted ZeroGPU quota does, or runs the function as given."""
    import os
    import gradio as gr

    calls = []

    def GPU(task=None, *, duration=None, **_):
        def wrap(fn):
            def run(*args, **kwargs):
                calls.append(duration(*args, **kwargs) if callable(duration) else duration)
                if os.environ["FAKE_SPACES"] == "quota":
                    raise gr.Error("You have exceeded your free GPU quota (75s requested vs. 0s left).",
                                   title="ZeroGPU quota exceeded")
                return fn(*args, **kwargs)
            return run
        return wrap(task) if callable(task) else wrap
''')

_USE_THE_APP = textwrap.dedent('''
    import json, sys
    import spaces, app
    from faceprot.cloak import PersonalMask
    out = {"on_zerogpu": app.ON_ZEROGPU, "failed": app.GPU_MODELS_FAILED}
    try:
        got = app.protect(sys.argv[1], "low", "dlib only", 0, "arc2face", False)
        out["verdict"] = got[0]
        out["generator"] = PersonalMask.load(got[5]).generator
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    out["calls"] = spaces.calls
    print("RESULT " + json.dumps(out))
''')


def _run_on_fake_zerogpu(tmp_path, mode: str, selfie: Path) -> dict:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "spaces.py").write_text(_FAKE_SPACES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)]), "SPACES_ZERO_GPU": "true",
           "FAKE_SPACES": mode, "FACEPROT_DATA_DIR": str(tmp_path / "data"),
           "GRADIO_EXAMPLES_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", _USE_THE_APP, str(selfie)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_an_exhausted_zerogpu_quota_falls_back_to_the_cpu_with_a_note(tmp_path):
    got = _run_on_fake_zerogpu(tmp_path, "quota", EXAMPLES / "obama-selfie.jpg")
    assert got["on_zerogpu"] is True
    # the GPU models were loaded at import, onto CUDA (which this machine lacks, so each says why)
    assert set(got["failed"]) == {"dlib-resnet", "mobilefacenet", "arcface-r100", "arc2face"}, got["failed"]
    assert "error" not in got, got.get("error")
    # the request set the duration: Arc2Face views (40) + start (10) + low's 10 iterations + the
    # selfie's 10 refinement steps + 15
    assert got["calls"] == [85]
    assert got["verdict"].startswith("**Made on the CPU.** The GPU was not available (ZeroGPU quota exceeded:")
    assert "from augment views" in got["verdict"] and "your selfie, compared with its own protected copy" in got["verdict"]
    assert got["generator"] == "augment"


@pytest.mark.slow
def test_a_users_mistake_inside_the_gpu_function_keeps_faceprots_sentence(tmp_path):
    """No fallback for a photo without a face: the person is told, in faceprot's words."""
    from PIL import Image

    blank = tmp_path / "empty-wall.png"
    Image.new("RGB", (320, 240), (200, 190, 180)).save(blank)
    got = _run_on_fake_zerogpu(tmp_path, "run", blank)
    assert got["calls"] == [85]
    assert got["error"].startswith("Error: empty-wall.png:") or got["error"].startswith("Error: 'empty-wall.png"), got
    assert "face" in got["error"] and "GPU" not in got["error"]


def test_the_small_copy_keeps_alpha_and_the_upright_orientation(tmp_path):
    """A small copy is the same picture, smaller: a portrait PNG with alpha, and a JPEG whose EXIF
    says to rotate it, come out at most 1024 px on their longer side, the right way up."""
    import numpy as np
    from PIL import Image

    from faceprot.io import load_image

    rgba = np.zeros((3000, 1500, 4), np.uint8)
    rgba[:1500, :, 0] = 255  # top half red
    rgba[..., 3] = 128
    png = tmp_path / "tall.png"
    Image.fromarray(rgba).save(png)
    small = load_image(png, max_side=1024)
    assert small.rgb.shape == (1024, 512, 3) and small.alpha.shape == (1024, 512)
    assert small.rgb[10, 10, 0] == 255 and small.rgb[-10, 10, 0] == 0 and small.alpha[5, 5] == 128

    wide = np.zeros((1000, 2000, 3), np.uint8)
    wide[:, :1000] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    jpg = tmp_path / "sideways.jpg"
    Image.fromarray(wide).save(jpg, exif=exif, quality=95)
    full, small = load_image(jpg), load_image(jpg, max_side=512)
    assert full.rgb.shape == (2000, 1000, 3) and small.rgb.shape == (512, 256, 3)
    assert small.rgb[10, 128].mean() > 200 and small.rgb[-10, 128].mean() < 50  # white on top, as in full
    assert full.rgb[10, 500].mean() > 200


def test_a_labelled_message_reads_as_one_sentence(app_module, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    verdict = app_module.validate_check(str(EXAMPLES / "biden.jpg"), str(empty))[1]
    assert verdict["message"].startswith("Photo B, the image file empty.jpg is empty (0 bytes)"), verdict


@pytest.mark.slow
def test_what_a_gpu_protect_returns_survives_the_trip_back_from_a_zerogpu_worker(app_module):
    """ZeroGPU runs the GPU function in a forked worker and pickles its arguments and its result;
    what it returns must pickle, and hold nothing on a GPU."""
    import pickle

    import gradio as gr
    import torch

    args = (str(EXAMPLES / "obama-selfie.jpg"), "low", ["dlib-resnet"], 0, "augment", False)
    pickle.loads(pickle.dumps((*args, gr.Progress())))
    made = app_module._make_mask(*args, "cpu", lambda *a, **k: None)
    back = pickle.loads(pickle.dumps(made))
    assert back.mask.preset == "low" and back.protected.png() == made.protected.png()
    assert back.protected.deltas and all(isinstance(d, torch.Tensor) and d.device.type == "cpu"
                                         for d in back.protected.deltas)
