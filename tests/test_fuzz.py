"""A fuzz of generated image files through ``load_image``, ``find_faces`` and the app's ``/check`` API.

Every case is a file (bytes and a name) built from a seed and its index alone, so that a failure
can be reproduced with ``make_case(seed, index)``. The cases vary the size (1x1 to 2 MP, chosen
log-uniformly so that most are small), the Pillow mode, the format and its options, the EXIF
orientation (1-8 and invalid ones), the file name's extension (sometimes a wrong one) and what is
done to the bytes (cut short, bytes flipped). Some are not pictures at all: random bytes, a text
file, an empty file. Their pixels are noise, flat colour, gradients, crops of real LFW photos, or a
whole real face photo re-encoded, so that some cases reach the recognizers too.

The rule checked for every case (issue 14): no unhandled exception anywhere. ``load_image`` either
returns a ``Picture`` or raises a ``FaceprotError`` whose message names the file; a picture that
loads goes through ``find_faces`` (which may only refuse it with ``NoFaceError``); the app's
``/check`` either answers or raises an error naming the file, and it agrees with what the library
said. A well-formed file (nothing cut or flipped) must load, at its size turned by its orientation.

CI runs 300 cases (six chunks of 50 that ``pytest-xdist`` spreads over its workers); the 1,000-case
soak carries the ``soak`` marker, which ``addopts`` leaves out unless ``-m slow`` or ``-m soak``
is given.
"""

from __future__ import annotations

import hashlib
import io
import struct
import time
import traceback
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import load_manifest

# Pillow warns (UserWarning) on the damaged TIFFs it still opens; damage is what the fuzz makes.
pytestmark = [pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning"),
              pytest.mark.filterwarnings("ignore:Truncated File Read:UserWarning")]

CI_SEED, CI_CASES, CI_CHUNKS = 14, 300, 6
#: CI's six chunks should take 3 minutes at most on two workers (issue 14): about 60 s a chunk.
#: On the 2-core development machine a chunk took 21-34 s alone, but up to 60 s while another
#: test run shared the machine, so the test only fails a chunk far over budget (a hang, a much
#: slower detector); the 3-minute figure is measured (the printed times), not asserted.
CI_CHUNK_SECONDS = 150
SOAK_SEED, SOAK_CASES, SOAK_CHUNKS = 1014, 1000, 10
MAX_PIXELS = 2_000_000

#: The extension each format is usually given; a "wrong" extension is drawn from the others.
EXTENSIONS = {
    "JPEG": [".jpg", ".jpeg", ".JPG"], "PNG": [".png"], "WEBP": [".webp"], "TIFF": [".tif", ".tiff"],
    "BMP": [".bmp"], "GIF": [".gif"], "HEIF": [".heic"],
}
ALL_EXTENSIONS = sorted({e for v in EXTENSIONS.values() for e in v} | {".txt", ".bin", ""})

#: Modes each format is written in. "RGB16" / "RGBA16" are 16 bit per channel (written with cv2),
#: "P+t" is a palette image with a transparent colour; "anim" is an animated GIF.
MODES = {
    "JPEG": ["1", "L", "RGB", "RGB", "CMYK"],
    "PNG": ["1", "L", "LA", "P", "P+t", "RGB", "RGBA", "I;16", "I", "RGB16", "RGBA16"],
    "WEBP": ["L", "RGB", "RGBA"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "RGB16"],
    "BMP": ["1", "L", "P", "RGB", "RGBA"],
    "GIF": ["L", "P", "P+t", "RGB", "anim"],
    "HEIF": ["RGB", "RGBA"],
}
#: Formats whose files carry an EXIF orientation that faceprot applies.
EXIF_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF", "HEIF"}
FORMAT_WEIGHTS = {"JPEG": 0.28, "PNG": 0.28, "WEBP": 0.1, "TIFF": 0.14, "BMP": 0.07, "GIF": 0.08, "HEIF": 0.05}


@dataclass
class Case:
    """One fuzz input: the file's name and bytes, what was generated, and what must happen."""

    seed: int
    index: int
    name: str
    data: bytes
    what: dict = field(default_factory=dict)
    #: (W, H) the picture must load at, upright; None when it may be refused.
    expect_size: tuple[int, int] | None = None

    def describe(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in self.what.items())
        return (f"fuzz case seed={self.seed} index={self.index} name={self.name!r} ({len(self.data)} bytes; "
                f"{parts}); reproduce with tests.test_fuzz.make_case({self.seed}, {self.index})")


# ------------------------------------------------------------------------------------ generator


_PHOTOS: list[np.ndarray] | None = None


def _lfw_photos() -> list[np.ndarray]:
    """Twelve LFW photos (RGB uint8), always the same ones, for natural content and real faces."""
    global _PHOTOS
    if _PHOTOS is None:
        entries = sorted(load_manifest("lfw"), key=lambda e: e["file"])
        chosen = [e for e in entries if e.get("faces_detected_dlib") == 1][::97][:12]
        _PHOTOS = [np.asarray(Image.open(e["path"]).convert("RGB")) for e in chosen]
    return _PHOTOS


def _size(rng: np.random.Generator, index: int) -> tuple[int, int]:
    """(W, H): a few fixed extremes, otherwise log-uniform in pixels (1 to 2 MP) and in aspect."""
    special = index % 100
    if special == 1:
        return 1, 1
    if special == 2:
        return 2, 3
    if special == 50:  # near 2 MP, as a phone photo
        return [(1632, 1224), (1224, 1632), (1920, 1040), (1414, 1414)][index // 100 % 4]
    pixels = float(np.exp(rng.uniform(0, np.log(MAX_PIXELS))))
    aspect = float(np.exp(rng.uniform(np.log(1 / 4), np.log(4))))
    w = max(1, round(np.sqrt(pixels * aspect)))
    h = max(1, min(round(pixels / w), MAX_PIXELS // w))
    return w, h


def _content(rng: np.random.Generator, w: int, h: int) -> tuple[str, np.ndarray]:
    """(kind, (H, W, 3) uint8 pixels): noise, flat, a gradient, or a crop of a real photo."""
    kind = str(rng.choice(["noise", "flat", "gradient", "photo", "photo"]))
    if kind == "noise":
        return kind, rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == "flat":
        return kind, np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (h, w, 3)).copy()
    if kind == "gradient":
        x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
        return kind, np.broadcast_to((x * rng.uniform(0, 1, 3) + y * rng.uniform(0, 1, 3)) % 256,
                                     (h, w, 3)).astype(np.uint8)
    photos = _lfw_photos()
    src = photos[int(rng.integers(len(photos)))]
    sh, sw = src.shape[:2]
    cw, ch = int(rng.integers(1, sw + 1)), int(rng.integers(1, sh + 1))
    x0, y0 = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
    crop = np.ascontiguousarray(src[y0:y0 + ch, x0:x0 + cw])
    return kind, cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR if w * h > cw * ch else cv2.INTER_AREA)


def _exif(orientation: int | None) -> bytes:
    if orientation is None:
        return b""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _cv2_16bit(rgb: np.ndarray, alpha: bool, ext: str) -> bytes:
    """16-bit per channel PNG/TIFF bytes (Pillow writes no 16-bit RGB), via cv2 (BGR order)."""
    deep = rgb.astype(np.uint16) * 257 + np.uint16(0)
    bgr = deep[..., ::-1]
    if alpha:
        a = np.linspace(0, 65535, rgb.shape[1], dtype=np.uint16)[None, :].repeat(rgb.shape[0], 0)
        bgr = np.dstack([bgr, a])
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr))
    assert ok, f"cv2 could not write a 16-bit {ext}"
    return buf.tobytes()


def _to_mode(rng: np.random.Generator, rgb: np.ndarray, mode: str) -> Image.Image:
    """A Pillow image of ``mode`` made from ``rgb`` (the 16/32-bit and float modes from its grey)."""
    im = Image.fromarray(rgb)
    grey = np.asarray(im.convert("L"))
    if mode in ("1", "L", "RGB", "CMYK"):
        return im.convert(mode)
    if mode in ("LA", "RGBA"):
        base = im.convert(mode[:-1])
        alpha = rng.integers(0, 256, grey.shape, dtype=np.uint8) if rng.random() < 0.5 else 255 - grey
        base.putalpha(Image.fromarray(np.ascontiguousarray(alpha)))
        return base
    if mode in ("P", "P+t"):
        p = im.quantize(colors=int(rng.choice([2, 16, 256])))
        if mode == "P+t":
            p.info["transparency"] = int(rng.integers(0, len(p.getpalette() or [0, 0, 0]) // 3))
        return p
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257)
    if mode == "I":  # 32-bit signed: sometimes outside 0-65535, which faceprot clips
        spread = int(rng.choice([257, 257, 70000]))
        return Image.fromarray(grey.astype(np.int32) * spread - (spread > 257) * 1_000_000, "I")
    if mode == "F":
        values = grey.astype(np.float32) / float(rng.choice([1, 255]))
        if values.size > 2 and rng.random() < 0.3:  # NaN and infinities are valid float samples
            values.flat[int(rng.integers(values.size))] = np.nan
            values.flat[int(rng.integers(values.size))] = np.inf
        return Image.fromarray(values, "F")
    raise AssertionError(mode)


def _encode(rng: np.random.Generator, rgb: np.ndarray, fmt: str, mode: str, orientation: int | None,
            what: dict) -> bytes:
    """File bytes of ``rgb`` written as ``fmt`` in ``mode`` with options drawn from ``rng``."""
    h, w = rgb.shape[:2]
    exif = _exif(orientation) if fmt in EXIF_FORMATS else b""
    if mode in ("RGB16", "RGBA16"):
        if orientation is not None:
            what["orientation"] = "not written (cv2 writes no EXIF)"
        return _cv2_16bit(rgb, mode == "RGBA16", ".png" if fmt == "PNG" else ".tiff")
    out = io.BytesIO()
    if mode == "anim":
        frames = [Image.fromarray(np.roll(rgb, 7 * k, axis=1)).convert("P") for k in range(int(rng.integers(2, 5)))]
        frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
        return out.getvalue()
    im = _to_mode(rng, rgb, mode)
    options: dict = {"exif": exif} if exif else {}
    if fmt == "JPEG":
        options.update(quality=int(rng.integers(5, 100)), progressive=bool(rng.random() < 0.4))
        what["progressive"] = options["progressive"]
    elif fmt == "WEBP":
        options.update(lossless=bool(rng.random() < 0.3), quality=int(rng.integers(5, 100)), method=0)
    elif fmt == "TIFF":
        choices = ["raw", "tiff_lzw", "tiff_adobe_deflate", "packbits"]
        if mode in ("RGB", "L"):
            choices.append("jpeg")
        if orientation not in range(1, 9):  # libtiff (every compression) refuses such a tag
            choices = ["raw"]
        options["compression"] = str(rng.choice(choices))
        what["compression"] = options["compression"]
    elif fmt == "HEIF":
        options["quality"] = int(rng.integers(10, 90))
    elif fmt == "PNG" and mode == "I":

        with warnings.catch_warnings():  # Pillow 12 deprecates saving mode I as PNG; it still works
            warnings.simplefilter("ignore", DeprecationWarning)
            im.save(out, format="PNG", **options)
        return out.getvalue()
    if fmt == "HEIF":
        _heif()
    im.save(out, format=fmt, **options)
    return out.getvalue()


def _heif() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def _upright_size(w: int, h: int, orientation: int | None) -> tuple[int, int]:
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _png_with_size(data: bytes, w: int, h: int) -> bytes:
    """The PNG with its IHDR's width and height replaced (and the chunk's CRC made right)."""
    assert data[12:16] == b"IHDR"
    chunk = b"IHDR" + struct.pack(">II", w, h) + data[24:29]
    return data[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def make_case(seed: int, index: int) -> Case:
    """The fuzz case ``index`` of the run seeded ``seed`` (deterministic: same seed, same bytes)."""
    rng = np.random.default_rng([seed, index])
    stem = f"fuzz{seed}-{index:04d}" + (" copy" if rng.random() < 0.05 else "")
    roll = rng.random()
    if roll < 0.05:  # random bytes: usually not a picture, and sometimes after a real magic number
        n = int(np.exp(rng.uniform(0, np.log(200_000))))
        magic = [b"", b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"II*\x00", b"BM", b"RIFF\0\0\0\0WEBP",
                 b"\0\0\0\x18ftypheic"][int(rng.integers(9))]
        data = magic + rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        ext = str(rng.choice(ALL_EXTENSIONS))
        return Case(seed, index, stem + ext, data, {"kind": "garbage", "magic": magic[:12]})
    if roll < 0.07:
        text = "".join(f"line {k}: this is not a picture, just text.\n" for k in range(int(rng.integers(1, 50))))
        ext = str(rng.choice([".txt", ".jpg", ".png"]))
        return Case(seed, index, stem + ext, text.encode(), {"kind": "text"})
    if roll < 0.09:
        ext = str(rng.choice([".jpg", ".png", ".heic"]))
        return Case(seed, index, stem + ext, b"", {"kind": "empty"})

    fmt = str(rng.choice(list(FORMAT_WEIGHTS), p=list(FORMAT_WEIGHTS.values())))
    mode = str(rng.choice(MODES[fmt]))
    face = rng.random() < 0.1
    if face:  # a whole real face photo, sometimes enlarged, re-encoded with this case's options
        photo = _lfw_photos()[int(rng.integers(len(_lfw_photos())))]
        scale = float(rng.choice([1, 1, 1.5, 3]))
        size = (round(250 * scale), round(250 * scale))
        rgb = cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC) if scale != 1 else photo
        content = "real face"
    else:
        w, h = _size(rng, index)
        if fmt == "HEIF":  # encoding HEVC takes ~0.2 s per 0.1 MP: keep HEIC cases small
            w, h = min(w, 500), min(h, 500)
        content, rgb = _content(rng, w, h)
    h, w = rgb.shape[:2]
    r = rng.random()
    orientation = None if r < 0.4 else (int(rng.integers(1, 9)) if r < 0.9 else int(rng.choice([0, 9, 255])))
    what = {"format": fmt, "mode": mode, "size": f"{w}x{h}", "content": content, "orientation": orientation}
    data = _encode(rng, rgb, fmt, mode, orientation, what)
    oriented = orientation if fmt in EXIF_FORMATS and mode not in ("RGB16", "RGBA16") else None
    expect = _upright_size(w, h, oriented)

    r = rng.random()
    if r < 0.12:  # cut short: to nothing, inside the header, or anywhere
        where = rng.random()
        cut = 0 if where < 0.1 else (int(rng.integers(1, min(64, len(data)))) if where < 0.3
                                     else int(rng.integers(1, len(data))))
        data, what["mutation"], expect = data[:cut], f"truncated to {cut} bytes", None
    elif r < 0.2:  # a few bytes flipped past the signature
        flipped = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            k = int(rng.integers(min(16, len(data) - 1), len(data)))
            flipped[k] ^= int(rng.integers(1, 256))
        data, what["mutation"], expect = bytes(flipped), "bytes flipped", None
    elif r < 0.23 and fmt == "PNG":  # a header that claims a huge picture (a decompression bomb)
        gw, gh = [(8000, 7000), (60000, 60000), (2**31 - 1, 1), (1, 2**31 - 1)][int(rng.integers(4))]
        data = _png_with_size(data, gw, gh)
        what["mutation"], expect = f"header claims {gw}x{gh}", None
    ext = str(rng.choice(EXTENSIONS[fmt]))
    if rng.random() < 0.1:  # the name says one format, the bytes hold another
        ext = str(rng.choice([e for e in ALL_EXTENSIONS if e not in EXTENSIONS[fmt]]))
        what["extension"] = f"wrong ({ext or 'none'})"
    return Case(seed, index, stem + ext, data, what, expect)


def make_cases(seed: int, start: int, stop: int) -> list[Case]:
    return [make_case(seed, i) for i in range(start, stop)]


# ------------------------------------------------------------------------------------ checks


def _failure(case: Case, stage: str, detail: str) -> str:
    return f"[{stage}] {case.describe()}\n    {detail}"


def _unexpected(case: Case, stage: str, e: BaseException) -> str:
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-6:])
    return _failure(case, stage, f"unhandled {type(e).__module__}.{type(e).__name__}: {e}\n{tb}")


def _library(case: Case, path: Path, problems: list[str]) -> str:
    """Run ``load_image`` (from the path and from the bytes) and ``find_faces`` on one case.

    Returns the outcome the app must agree with: "refused", "no face" or "face"; "" when the case
    already failed (the problem is appended to ``problems``). A RuntimeWarning raised in
    faceprot's own code (numpy's invalid casts, overflows) counts as a failure too: it means
    undefined pixels, not a handled input.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        outcome = _library_stages(case, path, problems)
    ours = {f"RuntimeWarning at {w.filename}:{w.lineno}: {w.message}" for w in caught
            if issubclass(w.category, RuntimeWarning) and "faceprot" in Path(w.filename).parts}
    problems.extend(_failure(case, "numpy", text) for text in sorted(ours))
    return "" if ours else outcome


def _library_stages(case: Case, path: Path, problems: list[str]) -> str:
    from faceprot.errors import FaceprotError, NoFaceError
    from faceprot.faces import find_faces
    from faceprot.io import load_image

    try:
        pic = load_image(path)
    except FaceprotError as e:
        if case.name not in str(e):
            problems.append(_failure(case, "load_image", f"the message does not name the file: {e}"))
        elif case.expect_size is not None:
            problems.append(_failure(case, "load_image", f"a well-formed file was refused: {e}"))
        else:
            try:  # the file's bytes must be refused too (load_image reads the same bytes)
                load_image(case.data)
                problems.append(_failure(case, "load_image", f"refused from its path ({e}) but loads from bytes"))
            except FaceprotError:
                return "refused"
            except Exception as e2:  # noqa: BLE001 - any other type is the bug being looked for
                problems.append(_unexpected(case, "load_image(bytes)", e2))
        return ""
    except Exception as e:  # noqa: BLE001
        problems.append(_unexpected(case, "load_image", e))
        return ""
    if case.expect_size is not None and pic.size != case.expect_size:
        problems.append(_failure(case, "load_image", f"loaded at {pic.size}, expected {case.expect_size} (W, H)"))
        return ""
    try:
        same = load_image(case.data)
    except Exception as e:  # noqa: BLE001
        problems.append(_failure(case, "load_image(bytes)", f"loads from its path but not from bytes: {e!r}"))
        return ""
    if not np.array_equal(same.rgb, pic.rgb):
        problems.append(_failure(case, "load_image(bytes)", "its path and its bytes give different pixels"))
        return ""
    try:
        faces = find_faces(pic.rgb)
    except NoFaceError:
        return "no face"
    except Exception as e:  # noqa: BLE001
        problems.append(_unexpected(case, "find_faces", e))
        return ""
    if not (isinstance(faces, list) and faces and all(f.landmarks68.shape == (68, 2) for f in faces)):
        problems.append(_failure(case, "find_faces", f"returned {faces!r}, not a list of faces"))
        return ""
    return "face"


def _api(case: Case, path: Path, photo_b: str, client, outcome: str, problems: list[str]) -> None:
    """Send the case as photo A to the app's ``/check``: it must answer as the library did.

    A file the library refused, or found no face in, must come back as the app's own error (an
    ``AppError``) naming photo A's file; a file with a face must be scored against photo B.
    """
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    try:
        verdict, _html, rows = client.predict(handle_file(str(path)), handle_file(photo_b), api_name="/check")
    except AppError as e:
        if case.name not in str(e) or "Photo A" not in str(e):
            problems.append(_failure(case, "/check", f"the app's error does not name photo A's file: {e}"))
        elif outcome == "face":
            problems.append(_failure(case, "/check", f"the library found a face, the app refused: {e}"))
        elif outcome == "no face" and "face" not in str(e):
            problems.append(_failure(case, "/check", f"the library found no face; the app said: {e}"))
        return
    except Exception as e:  # noqa: BLE001 - a crash of the round trip itself
        problems.append(_unexpected(case, "/check", e))
        return
    if outcome != "face":
        problems.append(_failure(case, "/check", f"the library said {outcome!r}; the app answered {verdict!r}"))
    elif case.name not in verdict or len(rows) != 3:
        problems.append(_failure(case, "/check", f"odd answer: {verdict!r} with {len(rows)} rows"))


@pytest.fixture(scope="module")
def client(app_url):
    pytest.importorskip("gradio_client")
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def photo_b() -> str:
    """The fixed photo B: the first LFW photo whose face dlib finds."""
    return next(e["path"] for e in sorted(load_manifest("lfw"), key=lambda e: e["file"])
                if e.get("faces_detected_dlib") == 1)


def _run_chunk(seed: int, start: int, stop: int, client, photo_b: str, tmp_path: Path) -> float:
    """All three stages for cases ``start``..``stop - 1``; every problem is listed, then the app
    must still score two real photos."""
    t0 = time.monotonic()
    problems: list[str] = []
    outcomes: dict[str, int] = {}
    for index in range(start, stop):
        try:
            case = make_case(seed, index)
        except Exception as e:  # noqa: BLE001 - a generator bug must say which case
            problems.append(f"[generator] seed={seed} index={index}: {e!r}")
            continue
        folder = tmp_path / str(index)  # one folder each: names repeat across cases' stems
        folder.mkdir()
        path = folder / case.name
        path.write_bytes(case.data)
        outcome = _library(case, path, problems)
        if outcome:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            _api(case, path, photo_b, client, outcome, problems)
    try:  # the server survived the chunk and still does real work
        verdict = client.predict(*(_handle(photo_b) for _ in range(2)), api_name="/check")[0]
        assert "3 of 3 recognizers say these show the same person" in verdict, verdict
    except Exception as e:  # noqa: BLE001
        problems.append(f"[after the chunk] the app no longer scores two real photos: {e!r}")
    elapsed = time.monotonic() - t0
    print(f"fuzz seed={seed} cases {start}-{stop - 1}: {elapsed:.1f} s, {outcomes}")
    assert not problems, f"{len(problems)} of {stop - start} fuzz cases failed:\n\n" + "\n\n".join(problems)
    return elapsed


def _handle(path: str):
    from gradio_client import handle_file

    return handle_file(path)


CI_CHUNK = CI_CASES // CI_CHUNKS
SOAK_CHUNK = SOAK_CASES // SOAK_CHUNKS


@pytest.mark.slow
@pytest.mark.parametrize("start", range(0, CI_CASES, CI_CHUNK), ids=lambda s: f"cases{s}-{s + CI_CHUNK - 1}")
def test_fuzz_300(start, client, photo_b, tmp_path):
    """CI's fuzz (issue 14): 300 generated files, in chunks of 50 that xdist's workers share,
    through load_image, find_faces and /check; no unhandled exception, every refusal names the
    file, the app agrees with the library, and the app still works after each chunk."""
    elapsed = _run_chunk(CI_SEED, start, start + CI_CHUNK, client, photo_b, tmp_path)
    assert elapsed < CI_CHUNK_SECONDS, (
        f"{CI_CHUNK} fuzz cases took {elapsed:.0f} s, over {CI_CHUNK_SECONDS} s: the 300 are far "
        "from CI's 3 minutes on two workers")


@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.parametrize("start", range(0, SOAK_CASES, SOAK_CHUNK), ids=lambda s: f"cases{s}-{s + SOAK_CHUNK - 1}")
def test_fuzz_1000(start, client, photo_b, tmp_path):
    """The 1,000-case soak of the same checks with another seed (``-m slow`` or ``-m soak``;
    left out of the CI run by addopts' ``-m 'not soak'``)."""
    _run_chunk(SOAK_SEED, start, start + SOAK_CHUNK, client, photo_b, tmp_path)


# ------------------------------------------------------------------------------------ the generator


def test_the_generator_is_deterministic():
    """The same seed and index give the same bytes and name, so a failure can be replayed."""
    for index in (0, 1, 2, 50, 123):
        a, b = make_case(CI_SEED, index), make_case(CI_SEED, index)
        assert (a.name, hashlib.sha256(a.data).digest()) == (b.name, hashlib.sha256(b.data).digest())
    assert make_case(CI_SEED, 3).data != make_case(CI_SEED + 1, 3).data


@pytest.mark.slow
def test_the_300_cases_cover_what_issue_14_asks_for():
    """The CI seed's 300 cases include every format, mode, orientation (valid and not), the
    extremes of size, cut and flipped files, non-images, wrong extensions and real faces; a
    generator change that lost a kind would leave the fuzz checking less than it says."""
    cases = make_cases(CI_SEED, 0, CI_CASES)
    seen: dict[str, set] = {}
    for c in cases:
        for k, v in c.what.items():
            seen.setdefault(k, set()).add(v if k != "mutation" else str(v).split(" ")[0])
    assert seen["kind"] >= {"garbage", "text", "empty"}
    assert seen["format"] == set(MODES)
    assert seen["mode"] >= {"1", "L", "LA", "P", "P+t", "RGB", "RGBA", "CMYK", "I;16", "I", "RGB16", "RGBA16"}
    assert seen["orientation"] >= {None, *range(1, 9)} and seen["orientation"] & {0, 9, 255}
    assert seen["mutation"] >= {"truncated", "bytes", "header"} and any(k.startswith("wrong") for k in seen["extension"])
    assert seen["content"] >= {"noise", "flat", "gradient", "photo", "real face"}
    assert seen["progressive"] == {True, False}
    sizes = [tuple(map(int, c.what["size"].split("x"))) for c in cases if "size" in c.what]
    assert (1, 1) in sizes and (2, 3) in sizes and max(w * h for w, h in sizes) > 1_900_000
    assert sorted(w * h for w, h in sizes)[len(sizes) // 2] < 50_000  # log-uniform: most are small
    cuts = [c.what["mutation"] for c in cases if str(c.what.get("mutation", "")).startswith("truncated")]
    assert "truncated to 0 bytes" in cuts and len(set(cuts)) > 10
