"""faceprot.io: every input the issue lists loads upright as 8-bit RGB(+alpha); bad input fails clearly;
PNG output is exact, deterministic and carries no metadata beyond alpha and ICC."""

from __future__ import annotations

import io
import itertools
import struct
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps

import faceprot.io as fio
from faceprot.errors import ImageInputError
from faceprot.io import Picture, encode_png, load_image, save_png

from conftest import shared_path

RNG = np.random.default_rng(1234)


# ------------------------------------------------------------------------------ file builders


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_by_hand(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _png16(samples: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG (Pillow cannot save 16-bit RGB/RGBA/LA). Rows alternate the None, Sub and Up
    filters, so a decoder that used the wrong bytes-per-pixel would give wrong values."""
    h, w = samples.shape[:2]
    raw = samples.astype(">u2").reshape(h, -1).view(np.uint8).astype(np.int16)  # (H, W*channels*2)
    bpp = raw.shape[1] // w
    rows = []
    for y in range(h):
        kind = y % 3
        if kind == 1:  # Sub: minus the byte one pixel to the left
            filtered = raw[y] - np.concatenate([np.zeros(bpp, np.int16), raw[y, :-bpp]])
        elif kind == 2:  # Up: minus the byte above
            filtered = raw[y] - raw[y - 1]
        else:
            filtered = raw[y]
        rows.append(bytes([kind]) + (filtered % 256).astype(np.uint8).tobytes())
    return _png_by_hand(w, h, 16, colour_type, zlib.compress(b"".join(rows)))


def _tiff16(samples: np.ndarray, endian: str) -> bytes:
    """An uncompressed 16-bit RGB(A) TIFF, little ("<") or big (">") endian, one strip."""
    h, w, n = samples.shape
    pixels = samples.astype(endian + "u2").tobytes()
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, n, "bps"), (259, 3, 1, 1), (262, 3, 1, 2),
            (273, 4, 1, "pixels"), (277, 3, 1, n), (278, 3, 1, h), (279, 4, 1, len(pixels)), (284, 3, 1, 1)]
    tags += [(338, 3, 1, 2)] if n == 4 else []  # ExtraSamples: unassociated alpha
    bps_at = 8 + 2 + 12 * len(tags) + 4
    where = {"bps": bps_at, "pixels": bps_at + 2 * n}
    ifd = struct.pack(endian + "H", len(tags))
    for tag, kind, count, value in tags:
        value = where.get(value, value)
        inline_short = kind == 3 and count == 1  # a lone SHORT sits left-aligned in the 4-byte field
        field = struct.pack(endian + "HH", value, 0) if inline_short else struct.pack(endian + "I", value)
        ifd += struct.pack(endian + "HHI", tag, kind, count) + field
    head = (b"II*\0" if endian == "<" else b"MM\0*") + struct.pack(endian + "I", 8)
    return head + ifd + b"\0" * 4 + struct.pack(endian + "H", 16) * n + pixels


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def _icc_profile(space: bytes, pcs: bytes, tags: dict[bytes, bytes]) -> bytes:
    """A minimal ICC v2 profile (ImageCms can only create sRGB/Lab/XYZ, not CMYK or grey)."""
    table, body = b"", b""
    offset = 128 + 4 + 12 * len(tags)
    for sig, data in tags.items():
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    d50 = struct.pack(">3i", *(round(v * 65536) for v in (0.9642, 1.0, 0.8249)))
    header = (
        struct.pack(">I", size) + b"\0" * 4 + bytes([2, 0x10, 0, 0]) + b"prtr" + space + pcs
        + b"\0" * 12 + b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + d50 + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def _xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + struct.pack(">3i", *(round(v * 65536) for v in (x, y, z)))


def _cmyk_profile_rotated_inks() -> bytes:
    """CMYK -> Lab lut8 in which cyan ink takes away blue (not red), magenta red and yellow green.

    White, black and the grey axis stay where they belong, so every rendering intent behaves; but
    pure cyan comes out yellow, which the naive formula (cyan) never gives: a loader that shows
    yellow really applied the profile.
    """
    corners = [  # the 2x2x2x2 grid, C slowest and K fastest, as sRGB
        [(1 - m) * (1 - k) * 255, (1 - y) * (1 - k) * 255, (1 - c) * (1 - k) * 255]
        for c, m, y, k in itertools.product((0, 1), repeat=4)
    ]
    srgb, lab_space = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
    to_lab = ImageCms.buildTransform(srgb, lab_space, "RGB", "LAB")
    lab = np.asarray(ImageCms.applyTransform(Image.fromarray(np.array([corners], np.uint8)), to_lab)).copy()
    lab[..., 1:] ^= 0x80  # Pillow stores a*, b* as signed bytes; ICC lut8 Lab uses 128 + value
    identity = struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536)
    ramp = bytes(range(256))
    lut = b"mft1" + b"\0" * 4 + bytes([4, 3, 2, 0]) + identity + ramp * 4 + lab.tobytes() + ramp * 3
    return _icc_profile(b"CMYK", b"Lab ", {b"A2B0": lut, b"wtpt": _xyz_tag(0.9642, 1.0, 0.8249)})


def _grey_profile_linear() -> bytes:
    """Grey profile with gamma 1.0: linear 50 % grey must become sRGB ~188, not stay at 128."""
    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, 256)  # one entry: gamma as u8Fixed8 = 1.0
    return _icc_profile(b"GRAY", b"XYZ ", {b"kTRC": curve, b"wtpt": _xyz_tag(0.9642, 1.0, 0.8249)})


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, format=fmt, **kw)
    return out.getvalue()


def _noise(h: int, w: int, channels: int = 3) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, channels), dtype=np.uint8)


# ------------------------------------------------------------------------------ bad input


def test_not_an_image_says_so(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is a shopping list, not a photo\n")
    with pytest.raises(ImageInputError, match="not an image") as e:
        load_image(path)
    assert "notes.jpg" in str(e.value) and "JPEG" in str(e.value)  # names the file and what works


def test_empty_file_says_empty(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageInputError, match=r"empty \(0 bytes\)"):
        load_image(path)
    with pytest.raises(ImageInputError, match="empty"):
        load_image(b"")


def test_missing_file_says_not_found(tmp_path):
    with pytest.raises(ImageInputError, match="not found") as e:
        load_image(tmp_path / "nowhere.jpg")
    assert "nowhere.jpg" in str(e.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_says_truncated(fmt):
    whole = _encode(Image.fromarray(_noise(64, 64)), fmt)
    with pytest.raises(ImageInputError, match="truncated or damaged") as e:
        load_image(whole[: len(whole) // 2])
    assert fmt in str(e.value)


def test_png_cut_inside_its_header_is_called_truncated_not_foreign():
    whole = _encode(Image.fromarray(_noise(8, 8)), "PNG")
    with pytest.raises(ImageInputError, match="looks like a PNG image but is truncated"):
        load_image(whole[:20])


def test_decompression_bomb_is_refused_from_header_with_its_megapixels(monkeypatch):
    # 30000 x 30000 1-bit: a few dozen bytes on disk, 900 MP (2.7 GB as RGB) once decoded. Pillow's
    # own check raises DecompressionBombError here; it must reach the user as ImageInputError.
    bomb = _png_by_hand(30_000, 30_000, 1, 0, zlib.compress(b"\0" * 3751))
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixels were decoded"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape either
        with pytest.raises(ImageInputError) as e:
            load_image(bomb)
    message = str(e.value)
    assert "900 megapixels" in message and "limit of 50 megapixels" in message
    assert "decompression bomb" in message


def test_over_limit_picture_is_refused_before_decoding(monkeypatch):
    # 10000 x 8000 = 80 MP: over our 50 MP limit, under Pillow's own ceilings. A complete, valid
    # 1-bit PNG built row by row so the test never holds the 10 MB of raw rows at once.
    packer = zlib.compressobj()
    idat = b"".join(packer.compress(b"\0" * 1251) for _ in range(8000)) + packer.flush()
    data = _png_by_hand(10_000, 8000, 1, 0, idat)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixels were decoded"))
    with pytest.raises(ImageInputError) as e:
        load_image(data)
    assert "10000x8000 = 80 megapixels" in str(e.value) and "limit of 50 megapixels" in str(e.value)


def test_picture_in_pillows_warning_range_raises_no_warning():
    # 100 MP is above Pillow's warning threshold (~89 MP) but below its error threshold.
    data = _png_by_hand(10_000, 10_000, 1, 0, b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageInputError, match="100 megapixels"):
            load_image(data)


def test_max_pixels_is_configurable_and_applies_to_arrays_and_pil_images():
    small = _encode(Image.fromarray(_noise(20, 20)), "PNG")
    with pytest.raises(ImageInputError, match=r"20x20 = 0.0004 megapixels, over the limit of 0.0001"):
        load_image(small, max_pixels=100)
    assert load_image(small, max_pixels=400).size == (20, 20)
    huge_view = np.broadcast_to(np.zeros(1, np.uint8), (9000, 6000))  # 54 MP, no memory behind it
    with pytest.raises(ImageInputError, match="54 megapixels"):
        load_image(huge_view)
    with pytest.raises(ImageInputError, match="0.0004 megapixels"):
        load_image(Image.new("RGB", (20, 20)), max_pixels=100)


def test_wrong_array_shape_or_dtype_is_explained():
    with pytest.raises(ImageInputError, match=r"uint8 with shape \(H, W\), \(H, W, 3\) or \(H, W, 4\)"):
        load_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageInputError, match="got uint8 \\(4, 4, 2\\)"):
        load_image(np.zeros((4, 4, 2), np.uint8))


def test_heic_without_pillow_heif_says_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes `import pillow_heif` fail
    monkeypatch.setattr(fio, "_heif_registered", None)
    heic_header = struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0mif1heic" + b"\0" * 64
    with pytest.raises(ImageInputError, match="pip install pillow-heif"):
        load_image(heic_header)


# ------------------------------------------------------------------------------ modes


def _roundtrip_via(im: Image.Image, fmt: str = "PNG", **kw) -> Picture:
    return load_image(_encode(im, fmt, **kw))


def test_rgb_png_loads_exactly():
    rgb = _noise(5, 7)
    pic = _roundtrip_via(Image.fromarray(rgb))
    assert pic.rgb.dtype == np.uint8 and pic.rgb.shape == (5, 7, 3) and pic.size == (7, 5)
    assert np.array_equal(pic.rgb, rgb) and pic.alpha is None and pic.format == "PNG" and pic.notices == []


def test_rgba_keeps_alpha():
    rgba = _noise(5, 7, 4)
    pic = _roundtrip_via(Image.fromarray(rgba))
    assert np.array_equal(pic.rgb, rgba[..., :3]) and np.array_equal(pic.alpha, rgba[..., 3])


def test_greyscale_l_and_la():
    grey = _noise(5, 7, 1)[..., 0]
    pic = _roundtrip_via(Image.fromarray(grey))
    assert np.array_equal(pic.rgb, np.dstack([grey] * 3)) and pic.alpha is None
    la = Image.merge("LA", [Image.fromarray(grey), Image.fromarray(grey[::-1].copy())])
    pic = _roundtrip_via(la)
    assert np.array_equal(pic.rgb[..., 1], grey) and np.array_equal(pic.alpha, grey[::-1])


def test_one_bit_becomes_black_and_white():
    bits = RNG.integers(0, 2, (6, 9)).astype(bool)
    pic = _roundtrip_via(Image.fromarray(bits))
    assert np.array_equal(pic.rgb, np.dstack([bits * 255] * 3).astype(np.uint8))


def test_palette_without_transparency():
    im = Image.fromarray(_noise(6, 6)).quantize(8)
    pic = _roundtrip_via(im)
    assert np.array_equal(pic.rgb, np.asarray(im.convert("RGB"))) and pic.alpha is None


def test_palette_with_transparency_gives_alpha():
    im = Image.new("P", (4, 2))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    im.putdata([0, 1, 2, 0, 1, 1, 2, 2])
    pic = _roundtrip_via(im, transparency=1)  # index 1 (green) is see-through
    expected_alpha = np.array([[255, 0, 255, 255], [0, 0, 255, 255]], np.uint8)
    assert np.array_equal(pic.alpha, expected_alpha)
    assert tuple(pic.rgb[0, 0]) == (255, 0, 0) and tuple(pic.rgb[0, 2]) == (0, 0, 255)


def test_cmyk_without_profile_converts_with_a_notice():
    im = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # no ink but magenta + yellow: red
    pic = _roundtrip_via(im, "TIFF")
    assert tuple(pic.rgb[0, 0]) == (255, 0, 0) and pic.icc_profile is None
    assert any("CMYK" in n and "no colour profile" in n for n in pic.notices)


def test_cmyk_with_profile_goes_through_littlecms_and_drops_the_profile():
    im = Image.new("CMYK", (8, 8), (255, 0, 0, 0))  # pure cyan ink
    pic = _roundtrip_via(im, "JPEG", icc_profile=_cmyk_profile_rotated_inks(), quality=95)
    r, g, b = (int(v) for v in pic.rgb[4, 4])
    assert r > 220 and g > 220 and b < 40, (r, g, b)  # the profile's yellow, so it was applied
    assert pic.icc_profile is None  # a CMYK profile must not ride on RGB pixels
    assert b"CMYK" not in encode_png(pic) and pic.notices == []


def test_grey_with_grey_profile_is_colour_managed():
    im = Image.new("L", (4, 4), 128)
    pic = _roundtrip_via(im, "PNG", icc_profile=_grey_profile_linear())
    assert abs(int(pic.rgb[0, 0, 0]) - 188) <= 2 and pic.icc_profile is None  # linear 0.5 in sRGB


def test_32bit_int_and_float_greyscale():
    values = np.array([[0, 257, 65535, 70000]], np.int32)
    pic = load_image(Image.fromarray(values))  # mode "I"
    assert list(pic.rgb[0, :, 0]) == [0, 1, 255, 255] and any("16 bits" in n for n in pic.notices)
    pic = load_image(Image.fromarray(np.array([[0.0, 99.6, 300.0]], np.float32)))  # mode "F"
    assert list(pic.rgb[0, :, 0]) == [0, 100, 255]


def test_float_grey_nan_and_infinity_become_black_and_white(tmp_path):
    """NaN and infinities are valid samples of a float TIFF. Found by tests/test_fuzz.py (seed
    1014): NaN went through numpy's undefined float -> uint8 cast (a RuntimeWarning, and on some
    machines any value); it is now black, with a notice."""
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[np.nan, np.inf, -np.inf, 99.6]], np.float32)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        pic = load_image(path)
    assert list(pic.rgb[0, :, 0]) == [0, 255, 0, 100]
    assert any("NaN" in n for n in pic.notices)


def test_tiff_and_bmp_load():
    rgb = _noise(6, 5)
    for fmt in ("TIFF", "BMP"):
        pic = _roundtrip_via(Image.fromarray(rgb), fmt)
        assert np.array_equal(pic.rgb, rgb) and pic.format == fmt


def test_animated_gif_uses_first_frame_with_notice():
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    pic = load_image(_encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    assert tuple(pic.rgb[0, 0]) == (255, 0, 0) and any("first frame" in n for n in pic.notices)


# ------------------------------------------------------------------------------ 16 bit

# 511 is where truncating to the high byte (1) and rounding (511 / 257 = 1.99 -> 2) part ways.
SIXTEEN = np.array([0, 65535, 511, 32767, 32768, 128, 129, 1000, 40000, 257, 65279, 12345], np.uint16)


def _expected8(v: np.ndarray) -> np.ndarray:
    return np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8)


def test_pillow_12_keeps_only_the_high_byte_of_48bit_png():
    """Why faceprot.io decodes 16-bit RGB twice: Pillow gives mode RGB holding v >> 8, no notice.
    If this starts failing, Pillow changed how it reads 16-bit colour PNGs: revisit the loader."""
    samples = SIXTEEN.reshape(2, 2, 3)
    im = Image.open(io.BytesIO(_png16(samples, 2)))
    assert im.mode == "RGB" and np.array_equal(np.asarray(im), (samples >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    "colour_type, channels",
    [(0, 1), (2, 3), (4, 2), (6, 4)],
    ids=["grey16", "rgb48", "grey-alpha32", "rgba64"],
)
def test_16bit_png_is_scaled_to_8bit_with_a_notice(colour_type, channels):
    samples = np.resize(SIXTEEN, 4 * 6 * channels).reshape(4, 6, channels)
    samples[0, 0] = 65535
    pic = load_image(_png16(samples.squeeze(-1) if channels == 1 else samples, colour_type))
    expected = _expected8(samples)
    colour = expected[..., :3] if channels >= 3 else np.repeat(expected[..., :1], 3, axis=2)
    assert np.array_equal(pic.rgb, colour)
    assert pic.rgb[0, 0, 0] == 255  # 65535 -> 255
    if channels in (2, 4):
        assert np.array_equal(pic.alpha, expected[..., -1])
    else:
        assert pic.alpha is None
    assert any("16 bits" in n and "8 bits" in n for n in pic.notices)


@pytest.mark.parametrize(
    "endian, channels", [("<", 3), (">", 4)], ids=["rgb48-little-endian", "rgba64-big-endian"]
)
def test_16bit_tiff_is_scaled_too(endian, channels):
    samples = np.resize(SIXTEEN, 3 * 5 * channels).reshape(3, 5, channels)
    pic = load_image(_tiff16(samples, endian))
    expected = _expected8(samples)
    assert pic.format == "TIFF" and np.array_equal(pic.rgb, expected[..., :3])
    assert (pic.alpha is None) if channels == 3 else np.array_equal(pic.alpha, expected[..., 3])
    assert any("16 bits" in n for n in pic.notices)


# ------------------------------------------------------------------------------ orientation

# EXIF orientation -> how the camera stored an upright scene (the inverse of the fix-up).
_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_ends_upright(orientation):
    upright = _noise(3, 5, 4)  # non-square, all pixels distinct in practice, alpha too
    stored = Image.fromarray(upright)
    if orientation != 1:
        stored = stored.transpose(_STORED[orientation])
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    pic = load_image(_encode(stored, "PNG", exif=exif))
    assert np.array_equal(pic.rgb, upright[..., :3]) and np.array_equal(pic.alpha, upright[..., 3])


@pytest.mark.parametrize("orientation", [0, *range(1, 9), 9])  # 0 and 9: not orientations
def test_exif_orientation_of_a_real_jpeg_matches_pillow(orientation):
    photo = Image.open(shared_path("assets", "faces", "photos", "obama", "obama.jpg")).convert("RGB")
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    data = _encode(photo, "JPEG", exif=exif, quality=90)
    pic = load_image(data)
    turned = orientation in (5, 6, 7, 8)
    assert pic.size == ((photo.height, photo.width) if turned else photo.size)
    assert np.array_equal(pic.rgb, np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data)))))


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK"])
def test_exif_orientation_of_an_uncompressed_tiff_file_is_applied(mode, tmp_path):
    """An uncompressed TIFF read from a path turns as its orientation tag says, as from bytes.

    Found by tests/test_fuzz.py (make_case(14, 0), a palette TIFF with orientation 5): Pillow
    memory-maps an uncompressed file opened by name, and that way skips the TIFF's orientation."""
    stored = Image.fromarray(_noise(3, 5)).convert(mode)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    path = tmp_path / "scan.tif"
    stored.save(path, exif=exif, compression="raw")
    from_path, from_bytes = load_image(path), load_image(path.read_bytes())
    assert from_path.size == from_bytes.size == (3, 5)
    assert np.array_equal(from_path.rgb, from_bytes.rgb)
    assert np.array_equal(from_path.rgb, np.asarray(stored.convert("RGB").transpose(Image.Transpose.ROTATE_270)))


# ------------------------------------------------------------------------------ formats, sources


def test_webp_lossless_with_alpha():
    rgba = _noise(8, 10, 4)
    pic = _roundtrip_via(Image.fromarray(rgba), "WEBP", lossless=True, exact=True)
    assert pic.format == "WEBP"
    assert np.array_equal(pic.rgb, rgba[..., :3]) and np.array_equal(pic.alpha, rgba[..., 3])


@pytest.fixture
def heic_writer():
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this pillow-heif build has no HEIC encoder, so no HEIC file can be written")
    pillow_heif.register_heif_opener()


def test_heic_round_trip(heic_writer):
    # Smooth gradient: HEVC is lossy, and noise would not survive it closely enough to compare.
    y, x = np.mgrid[0:64, 0:96]
    rgb = np.dstack([x * 2, y * 3, 255 - x * 2]).astype(np.uint8)
    pic = load_image(_encode(Image.fromarray(rgb), "HEIF", quality=95))
    assert pic.format == "HEIF" and pic.size == (96, 64)
    assert np.abs(pic.rgb.astype(int) - rgb).mean() < 4


def test_a_heic_selfie_keeps_its_face(heic_writer, photos_manifest):
    """A real photo saved as HEIC (as phones do) loads close to the original, and its face is
    found where the original's is."""
    from faceprot.faces import find_faces

    src = load_image(photos_manifest[0]["path"])
    pic = load_image(_encode(Image.fromarray(src.rgb), "HEIF", quality=90))
    assert pic.format == "HEIF" and pic.size == src.size
    assert np.abs(pic.rgb.astype(int) - src.rgb).mean() < 4
    a, b = find_faces(src.rgb)[0], find_faces(pic.rgb)[0]
    assert np.abs(np.asarray(a.points5) - np.asarray(b.points5)).max() < 3


def test_heic_orientation_is_applied_once(heic_writer):
    # pillow-heif stores EXIF orientation as an irot box, rotates on reading and resets EXIF to 1:
    # the loader must not rotate a second time.
    upright = np.zeros((40, 64, 3), np.uint8)
    upright[:10, :20] = 255  # white block top-left
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    stored = Image.fromarray(upright).transpose(_STORED[6])
    pic = load_image(_encode(stored, "HEIF", exif=exif.tobytes(), quality=95))
    assert pic.size == (64, 40) and pic.rgb[:10, :20].mean() > 240 and pic.rgb[15:, 25:].mean() < 15


def test_all_source_kinds_give_the_same_picture(tmp_path):
    rgba = _noise(6, 4, 4)
    data = _encode(Image.fromarray(rgba), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    for src in (path, str(path), data, io.BytesIO(data), Image.open(io.BytesIO(data)), rgba):
        pic = load_image(src)
        assert np.array_equal(pic.rgb, rgba[..., :3]) and np.array_equal(pic.alpha, rgba[..., 3]), type(src)
    grey = load_image(rgba[..., 0])
    assert grey.format == "array" and np.array_equal(grey.rgb, np.dstack([rgba[..., 0]] * 3))


def test_with_rgb_keeps_alpha_and_icc():
    pic = Picture(rgb=_noise(3, 4), alpha=_noise(3, 4, 1)[..., 0], icc_profile=b"x" * 20, format="PNG")
    new = pic.with_rgb(np.zeros((3, 4, 3), np.uint8))
    assert new.alpha is pic.alpha and new.icc_profile == pic.icc_profile and new.format == "PNG"
    assert not new.rgb.any() and pic.rgb.any()
    with pytest.raises(ValueError, match=r"\(3, 4, 3\)"):
        pic.with_rgb(np.zeros((4, 4, 3), np.uint8))


# ------------------------------------------------------------------------------ output


def test_png_round_trip_is_exact_and_keeps_alpha_and_icc(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pic = Picture(rgb=_noise(17, 23), alpha=_noise(17, 23, 1)[..., 0], icc_profile=srgb)
    path = save_png(pic, tmp_path / "out.png")
    back = load_image(path)
    assert np.array_equal(back.rgb, pic.rgb) and np.array_equal(back.alpha, pic.alpha)
    assert back.icc_profile == srgb and back.notices == []
    assert encode_png(pic) == path.read_bytes() == encode_png(pic.rgb, alpha=pic.alpha, icc_profile=srgb)


def test_encode_png_refuses_a_cmyk_profile():
    with pytest.raises(ValueError, match="RGB ICC profile"):
        encode_png(_noise(2, 2), icc_profile=_cmyk_profile_rotated_inks())


def test_privacy_no_exif_gps_xmp_or_text_reaches_the_png(tmp_path):
    photo = Image.open(shared_path("assets", "faces", "photos", "obama", "obama.jpg"))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "LeakyCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({
        ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (38.0, 53.0, 51.6),
        ExifTags.GPS.GPSLongitudeRef: "W", ExifTags.GPS.GPSLongitude: (77.0, 2.0, 11.6),
        ExifTags.GPS.GPSMapDatum: "WGS-84",
    })
    xmp = (
        b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="38,53.86N"/></rdf:RDF>'
        b'</x:xmpmeta><?xpacket end="w"?>'
    )
    jpeg = _encode(photo.convert("RGB"), "JPEG", exif=exif, xmp=xmp, quality=90,
                   icc_profile=photo.info.get("icc_profile"))
    leaky = Image.open(io.BytesIO(jpeg))  # the input really carries what must not leak
    assert leaky.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSMapDatum] == "WGS-84"
    assert b"xmpmeta" in jpeg

    png = save_png(load_image(jpeg), tmp_path / "clean.png").read_bytes()
    chunks = _png_chunks(png)
    kinds = {kind for kind, _ in chunks}
    assert kinds <= {b"IHDR", b"iCCP", b"IDAT", b"IEND"}, kinds
    assert not kinds & {b"eXIf", b"iTXt", b"tEXt", b"zTXt"}
    # Compressed pixels may hold any 3 bytes by chance, so the text checks look at everything else.
    metadata = b"".join(kind + body for kind, body in chunks if kind != b"IDAT")
    for secret in (b"GPS", b"WGS-84", b"LeakyCam", b"Exif"):
        assert secret not in metadata
    assert b"xmpmeta" not in png and b"<x:" not in png and b"xpacket" not in png
    clean = Image.open(io.BytesIO(png))
    assert not clean.getexif() and "exif" not in clean.info and "xmp" not in clean.info
    if photo.info.get("icc_profile"):  # the colour profile is kept: it is colour, not identity
        assert clean.info["icc_profile"] == photo.info["icc_profile"]
