"""Photos in, clean PNGs out.

:func:`load_image` turns whatever the user hands us (a path, bytes, a file object, a ``PIL.Image``
or a numpy array) into one :class:`Picture`: upright 8-bit sRGB-ish pixels, an optional alpha
channel, an optional RGB ICC profile and a list of notices for anything the user should know
(16-bit depth reduced, CMYK converted without a profile, ...). Every input the user can get wrong
raises :class:`~faceprot.errors.ImageInputError` with a message meant for a person.

:func:`encode_png` / :func:`save_png` write a lossless PNG that keeps alpha and the ICC profile and
nothing else: no EXIF, GPS, XMP or text chunks, because a privacy tool must not leak where or with
what a photo was taken.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator, Union

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageInputError

DEFAULT_MAX_PIXELS = 50_000_000

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray]


@dataclass(eq=False)  # eq on numpy fields would be ambiguous; compare arrays explicitly
class Picture:
    """One decoded photo, upright, ready for the face pipeline.

    Attributes:
        rgb: ``(H, W, 3)`` uint8, 0-255, in the colour space of ``icc_profile`` (sRGB when None).
        alpha: ``(H, W)`` uint8 opacity, 0 transparent - 255 opaque, or None for an opaque photo.
        icc_profile: an RGB ICC profile (bytes) to carry to the output, or None (sRGB).
        format: the source format as Pillow names it (``"JPEG"``, ``"PNG"``, ``"WEBP"``, ``"HEIF"``),
            ``"PIL"`` for an in-memory ``PIL.Image`` without one, ``"array"`` for a numpy array.
        notices: sentences for the user about what loading changed (e.g. 16-bit reduced to 8-bit).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    format: str = ""
    notices: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_rgb(self.rgb)
        if self.alpha is not None:
            _check_alpha(self.alpha, self.rgb)

    @property
    def size(self) -> tuple[int, int]:
        """``(W, H)``, Pillow's order."""
        return self.rgb.shape[1], self.rgb.shape[0]

    def with_rgb(self, new_rgb: np.ndarray) -> Picture:
        """A copy with ``new_rgb`` ``(H, W, 3)`` uint8 (same H, W) and the same alpha, ICC and notices."""
        _check_rgb(new_rgb)
        if new_rgb.shape != self.rgb.shape:
            raise ValueError(f"new rgb has shape {new_rgb.shape}, expected {self.rgb.shape}")
        return dataclasses.replace(self, rgb=new_rgb, notices=list(self.notices))


# --------------------------------------------------------------------------------------- loading


def load_image(src: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None) -> Picture:
    """Decode a photo into an upright :class:`Picture`.

    Args:
        src: a path (``str`` / ``Path``), the file's bytes, a binary file object, a ``PIL.Image``,
            or a uint8 numpy array ``(H, W)`` (grey), ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA).
        max_pixels: pictures with more pixels than this are refused from their header, before any
            pixel is decoded (50 MP by default; a 50 MP RGB photo already takes 150 MB as an array).
        max_side: when given, a small copy: a JPEG is decoded at a reduced scale (cheap, and
            still read to its end, so a truncated file is still refused) and any picture is then
            shrunk to at most this many pixels on its longer side. For previews and validation,
            never for protection.

    Returns:
        a :class:`Picture` whose ``rgb`` is ``(H, W, 3)`` uint8 after the EXIF orientation is applied.

    Raises:
        ImageInputError: missing, empty, non-image, truncated or damaged input; a picture over
            ``max_pixels``; HEIC without ``pillow-heif``; an array of the wrong shape or dtype.
    """
    if isinstance(src, np.ndarray):
        return _from_array(src, max_pixels)
    if isinstance(src, Image.Image):
        name = f"the {src.format or 'in-memory'} image"
        with _pillow_guard(name, max_pixels):
            _check_pixels(src.size, max_pixels, name)
            return _decode(src, name, reopen=None)

    name, source = _read_source(src)
    opener = _opener(source)
    with _pillow_guard(name, max_pixels):
        try:
            im = opener()
        except UnidentifiedImageError:
            raise ImageInputError(_unidentified_message(name, _head(source))) from None
        except (OSError, SyntaxError, EOFError, ValueError) as e:
            raise ImageInputError(_damaged_message(name, _sniff(_head(source)), e)) from None
        with im:
            # Image.open only parsed the header: refuse oversized pictures before decoding.
            _check_pixels(im.size, max_pixels, name)
            if max_side is None:
                return _decode(im, name, reopen=opener)
            if im.format == "JPEG":
                im.draft(im.mode, (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale
            return _shrunk(_decode(im, name, reopen=None), max_side)


def _read_source(src: object) -> tuple[str, Path | bytes]:
    """(name for messages, a path or the file's bytes), with missing / empty input refused."""
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise ImageInputError(f"Image file not found: {path}")
        if path.is_dir():
            raise ImageInputError(f"{path} is a folder, not an image file")
        if path.stat().st_size == 0:
            raise ImageInputError(f"The image file {path} is empty (0 bytes), so there is no picture in it")
        return str(path), path
    if isinstance(src, (bytes, bytearray, memoryview)):
        data, name = bytes(src), "the image data"
    elif hasattr(src, "read"):
        data = src.read()
        name = str(getattr(src, "name", "the uploaded file"))
        if isinstance(data, str):
            raise ImageInputError(f"{name} was opened as text; open image files in binary mode ('rb')")
        data = bytes(data)
    else:
        raise TypeError(
            "load_image takes a path, bytes, a binary file object, a PIL.Image or a numpy array, "
            f"not {type(src).__name__}"
        )
    if not data:
        raise ImageInputError(f"{name} is empty (0 bytes), so there is no picture in it")
    return name, data


def _opener(source: Path | bytes) -> Callable[[], ImageFile.ImageFile]:
    """A function that opens the source lazily (header only); the 16-bit path opens it twice."""
    if _sniff(_head(source)) == "HEIC/HEIF" and not _register_heif():
        raise ImageInputError(
            "This is a HEIC/HEIF picture (the iPhone default) and reading it needs the pillow-heif "
            "package: install it with `pip install pillow-heif`, or convert the photo to JPEG or PNG"
        )
    if isinstance(source, Path):
        # Decode the file's bytes, not the file by name: Pillow memory-maps an uncompressed file
        # opened by name, and on that path (Pillow 12.3) an uncompressed TIFF skips its EXIF
        # orientation, so the same picture loaded turned from bytes and on its side from a path.
        source = _read_all(source)
    return lambda: Image.open(io.BytesIO(source))


def _head(source: Path | bytes) -> bytes:
    return _read_all(source, 32) if isinstance(source, Path) else source[:32]


def _read_all(path: Path, limit: int = -1) -> bytes:
    """The file's bytes (the first ``limit`` of them when given), or a message saying why not."""
    try:
        with path.open("rb") as f:
            return f.read(limit)
    except OSError as e:
        raise ImageInputError(f"Could not read the image file {path}: {e.strerror or e}") from None


_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}


def _sniff(head: bytes) -> str | None:
    """The format the first bytes announce, for messages about files Pillow could not open."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[4:8] == b"ftyp":
        if head[8:12] in (b"avif", b"avis"):
            return "AVIF"
        if head[8:12] in _HEIF_BRANDS:
            return "HEIC/HEIF"
    return None


_heif_registered: bool | None = None


def _register_heif() -> bool:
    """Register pillow-heif's opener on first need; False when it is not installed."""
    global _heif_registered
    if _heif_registered is None:
        try:
            import pillow_heif
        except ImportError:
            return False  # not cached: installing it mid-session should work
        pillow_heif.register_heif_opener()
        _heif_registered = True
    return _heif_registered


@contextmanager
def _pillow_guard(name: str, max_pixels: int) -> Iterator[None]:
    """Turn Pillow's decompression-bomb warning and error into our own size refusal.

    Pillow warns above ``Image.MAX_IMAGE_PIXELS`` (~89 MP) and raises above twice that. Our own
    ``max_pixels`` check is the one that speaks to the user, so the warning is silenced and the
    error re-raised as :class:`ImageInputError` with the picture's size.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except Image.DecompressionBombError as e:
            m = re.search(r"\((\d+) pixels\)", str(e))
            pixels = int(m.group(1)) if m else None
            if pixels is None or pixels > max_pixels:
                raise ImageInputError(_too_big_message(name, pixels, None, max_pixels)) from None
            ceiling = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            raise ImageInputError(
                f"{name} has {_megapixels(pixels)} megapixels, within max_pixels but above Pillow's "
                f"decompression-bomb ceiling of {_megapixels(ceiling)} megapixels; raise "
                "PIL.Image.MAX_IMAGE_PIXELS as well to load it"
            ) from None


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = size
    if w * h == 0:
        raise ImageInputError(f"{name} has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageInputError(_too_big_message(name, w * h, (w, h), max_pixels))


def _too_big_message(name: str, pixels: int | None, size: tuple[int, int] | None, limit: int) -> str:
    dims = f"{size[0]}x{size[1]} = " if size else ""
    what = f"is {dims}{_megapixels(pixels)} megapixels" if pixels else "is too large"
    return (
        f"{name} {what}, over the limit of {_megapixels(limit)} megapixels (refused before decoding, "
        "as it could be a decompression bomb); shrink the picture or pass a larger max_pixels"
    )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.4g}"  # 900 MP -> "900", 50.3 MP -> "50.3", a 20x20 icon -> "0.0004"


def _unidentified_message(name: str, head: bytes) -> str:
    fmt = _sniff(head)
    if fmt == "AVIF":
        return (
            f"{name} is an AVIF picture, and this Pillow was built without AVIF support; "
            "convert it to JPEG or PNG"
        )
    if fmt is not None:
        return _damaged_message(name, fmt, None)
    return (
        f"{name} is not an image faceprot can read (not a recognised picture format). "
        "Use JPEG, PNG, WebP or HEIC (HEIC needs pillow-heif); TIFF, BMP and GIF also work."
    )


def _damaged_message(name: str, fmt: str | None, err: Exception | None) -> str:
    looks = f"looks like a {fmt} image but " if fmt else ""
    # the decoder's own words, in one pair of brackets: "image file is truncated (6 bytes not
    # processed)" reads as "(the decoder says: image file is truncated, 6 bytes not processed)"
    said = re.sub(r"\s*\(([^()]*)\)", r", \1", str(err)) if err else ""
    why = f" (the decoder says: {said})" if said else ""
    return f"{name} {looks}is truncated or damaged, so its pixels could not be decoded{why}"


# --------------------------------------------------------------------------------------- decoding


def _decode(im: Image.Image, name: str, reopen: Callable[[], Image.Image] | None) -> Picture:
    """Pillow image (header read, maybe not pixels) -> upright Picture."""
    notices: list[str] = []
    icc = im.info.get("icc_profile") or None
    fmt = im.format  # set by every file plugin; None for an image made in memory
    try:
        colour, alpha = _colour_and_alpha(im, reopen, notices)
        rgb, icc = _to_rgb(colour, icc, notices)
        orientation = _orientation(im)  # after decoding: a PNG's getexif() loads the pixels
    except (OSError, SyntaxError, EOFError, ValueError) as e:
        # Pillow reports a file cut short as OSError("image file is truncated ...") or similar.
        raise ImageInputError(_damaged_message(name, fmt, e)) from None
    if getattr(im, "is_animated", False) and fmt != "MPO":  # MPO: camera JPEG + preview, not motion
        notices.append(f"{name} is animated; only its first frame is used.")
    rgb, alpha = _upright(rgb, alpha, orientation)
    return Picture(rgb=rgb, alpha=alpha, icc_profile=icc, format=fmt or "PIL", notices=notices)


def _shrunk(pic: Picture, max_side: int) -> Picture:
    """``pic`` with its longer side at most ``max_side`` (area-averaged, alpha alike)."""
    h, w = pic.rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return pic
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    rgb = np.asarray(Image.fromarray(pic.rgb).resize(size, Image.Resampling.BOX))
    alpha = None if pic.alpha is None else np.asarray(Image.fromarray(pic.alpha).resize(size, Image.Resampling.BOX))
    return dataclasses.replace(pic, rgb=rgb, alpha=alpha, notices=list(pic.notices))


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block must not stop the photo from loading
        return 1
    return value if isinstance(value, int) else 1


def _upright(rgb: np.ndarray, alpha: np.ndarray | None, orientation: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Turn the decoded colour and alpha upright with ``PIL.ImageOps.exif_transpose`` (one image, so
    both turn together); orientations outside 2-8 leave them as they are."""
    if orientation == 1:
        return rgb, alpha
    im = Image.fromarray(rgb if alpha is None else np.dstack([rgb, alpha]))
    im.getexif()[ExifTags.Base.Orientation] = orientation
    ImageOps.exif_transpose(im, in_place=True)
    upright = np.asarray(im)
    if alpha is None:
        return upright, None
    # copies, not np.ascontiguousarray: that keeps a 1-pixel picture's RGBA strides (see faces.packed)
    return upright[..., :3].copy(), upright[..., 3].copy()


_SIXTEEN_BIT_NOTICE = (
    "The picture has 16 bits per channel; it was reduced to 8 bits (65535 -> 255), "
    "which is what the face pipeline and the PNG output use."
)

# Pillow decodes 16-bit RGB(A) PNG/TIFF straight to 8-bit modes by keeping only the high byte of
# each sample (rawmode "RGB;16B" etc.). Decoding again with the opposite byte order yields the low
# bytes, so the two decodes give the full 16-bit value to round properly.
_OTHER_BYTE = {"RGB;16B": "RGB;16L", "RGB;16L": "RGB;16B", "RGBA;16B": "RGBA;16L", "RGBA;16L": "RGBA;16B"}


def _colour_and_alpha(
    im: Image.Image, reopen: Callable[[], Image.Image] | None, notices: list[str]
) -> tuple[Image.Image, np.ndarray | None]:
    """Split into a colour image (mode L, RGB or CMYK, 8-bit) and an (H, W) uint8 alpha or None."""
    mode = im.mode
    if mode.startswith("I"):  # I;16 / I;16B / I;16L greyscale and 32-bit I (taken as 16-bit range)
        values = np.asarray(im).astype(np.int64)
        if mode == "I" and (values.min() < 0 or values.max() > 65535):
            notices.append("Grey values outside 0-65535 were clipped.")
        notices.append(_SIXTEEN_BIT_NOTICE)
        return Image.fromarray(_scale16(np.clip(values, 0, 65535))), None
    rawmode = _rawmode(im)
    if mode in ("RGB", "RGBA") and rawmode in (*_OTHER_BYTE, "LA;16B"):
        notices.append(_SIXTEEN_BIT_NOTICE)
        samples = _sixteen_bit_samples(im, reopen)
        # 16-bit grey + alpha stays grey (L) so that a grey ICC profile still applies to it.
        colour = Image.fromarray(_scale16(samples[..., 0] if rawmode == "LA;16B" else samples[..., :3]))
        return colour, (_scale16(samples[..., 3]) if mode == "RGBA" else None)
    if mode == "F":  # Pillow's own F -> L conversion truncates; round instead
        notices.append("32-bit float grey values were rounded and clipped to 0-255.")
        values = np.asarray(im)
        if np.isnan(values).any():  # NaN has no uint8 value (numpy's cast is undefined): black
            notices.append("Grey values that were not numbers (NaN) were shown as black.")
            values = np.nan_to_num(values, nan=0.0)
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)), None
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info or (im.palette and im.palette.mode == "RGBA")
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("L", "RGB") and "transparency" in im.info:  # PNG tRNS: one colour is transparent
        im = im.convert("LA" if mode == "L" else "RGBA")
    elif mode in ("RGBa", "La"):  # premultiplied alpha
        im = im.convert(mode.upper())
    elif mode not in ("L", "LA", "RGB", "RGBA", "CMYK"):  # YCbCr, LAB, HSV, RGBX, ...
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    if im.mode in ("LA", "RGBA"):
        return im.convert(im.mode[:-1]), np.asarray(im.getchannel("A"))
    im.load()
    return im, None


def _rawmode(im: Image.Image) -> str | None:
    """How Pillow will unpack the file's samples (its tile's rawmode), None once loaded."""
    tile = getattr(im, "tile", None)
    if not tile:
        return None
    args = tile[0].args
    return args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else None)


def _sixteen_bit_samples(im: Image.Image, reopen: Callable[[], Image.Image] | None) -> np.ndarray:
    """Full 16-bit samples ``(H, W, 3|4)`` uint32 of a 16-bit RGB(A) or LA (given as L, L, L, A) file."""
    rawmode = _rawmode(im)
    high = np.asarray(_load_with_rawmode(im, None)).astype(np.uint32)
    if reopen is None:
        return high * 257  # an in-memory image we cannot decode twice: high byte only
    try:
        with reopen() as again:
            if rawmode == "LA;16B":  # "RGBA" copies the 4 raw bytes: L high, L low, A high, A low
                raw = np.asarray(_load_with_rawmode(again, "RGBA")).astype(np.uint32)
                grey, alpha = raw[..., 0] * 256 + raw[..., 1], raw[..., 2] * 256 + raw[..., 3]
                return np.stack([grey, grey, grey, alpha], axis=-1)
            # Whatever the file's byte order, the first decode took the high byte, this one the low.
            low = np.asarray(_load_with_rawmode(again, _OTHER_BYTE[rawmode])).astype(np.uint32)
    except (OSError, ValueError):  # a decoder that refuses the swapped rawmode: keep the high byte
        return high * 257
    return high * 256 + low


def _load_with_rawmode(im: Image.Image, rawmode: str | None) -> Image.Image:
    if rawmode is not None:
        # PNG tiles carry the rawmode alone, TIFF tiles (rawmode, stride, orientation).
        im.tile = [
            t._replace(args=rawmode if isinstance(t.args, str) else (rawmode, *t.args[1:])) for t in im.tile
        ]
    im.load()
    return im


def _scale16(values: np.ndarray) -> np.ndarray:
    """0-65535 integers -> 0-255 uint8, rounded (v / 257, so 65535 -> 255 and 32896 -> 128)."""
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _icc_space(icc: bytes) -> str:
    """The ICC profile's data colour space ('RGB', 'GRAY', 'CMYK', ...) from its header."""
    return icc[16:20].decode("ascii", "replace").strip() if len(icc) >= 20 else ""


def _to_rgb(colour: Image.Image, icc: bytes | None, notices: list[str]) -> tuple[np.ndarray, bytes | None]:
    """8-bit colour image (L, RGB or CMYK) -> ``(H, W, 3)`` uint8 and the ICC profile to keep.

    An RGB profile travels with the pixels. A profile of the image's own non-RGB space (CMYK, grey)
    is used to convert to sRGB and then dropped: a CMYK profile on RGB pixels would be wrong.
    """
    space = _icc_space(icc) if icc else None
    if space == "":
        notices.append("An unreadable colour profile was dropped.")
        icc = space = None
    if space == "RGB" or space is None:
        if colour.mode == "CMYK":
            notices.append(
                "The CMYK picture has no colour profile; it was converted to RGB with a simple "
                "formula, so colours may be slightly off."
            )
        return np.asarray(colour.convert("RGB")), icc
    if (space, colour.mode) in (("CMYK", "CMYK"), ("GRAY", "L")):
        converted = _icc_to_srgb(colour, icc)
        if converted is not None:
            return np.asarray(converted), None
        notices.append(f"The {space} colour profile could not be applied; colours are approximate.")
    else:
        notices.append(f"A {space} colour profile that does not match the {colour.mode} pixels was dropped.")
    return np.asarray(colour.convert("RGB")), None


def _icc_to_srgb(colour: Image.Image, icc: bytes) -> Image.Image | None:
    try:
        from PIL import ImageCms  # needs Pillow built with LittleCMS
    except ImportError:
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(colour, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None


def _from_array(a: np.ndarray, max_pixels: int) -> Picture:
    """uint8 ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` -> Picture (the array is copied)."""
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageInputError(
            f"An image array must be uint8 with shape (H, W), (H, W, 3) or (H, W, 4); got {a.dtype} "
            f"{a.shape}. Convert 0-1 floats with (a * 255).round().astype(np.uint8)"
        )
    _check_pixels((a.shape[1], a.shape[0]), max_pixels, "the image array")
    if a.ndim == 2:
        return Picture(rgb=np.repeat(a[..., None], 3, axis=2), format="array")
    alpha = a[..., 3].copy() if a.shape[2] == 4 else None
    return Picture(rgb=a[..., :3].copy(), alpha=alpha, format="array")


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        desc = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"rgb must be a (H, W, 3) uint8 array, got {desc}")


def _check_alpha(alpha: np.ndarray, rgb: np.ndarray) -> None:
    if not isinstance(alpha, np.ndarray) or alpha.dtype != np.uint8 or alpha.shape != rgb.shape[:2]:
        desc = f"{alpha.dtype} {alpha.shape}" if isinstance(alpha, np.ndarray) else type(alpha).__name__
        raise ValueError(f"alpha must be a {rgb.shape[:2]} uint8 array matching rgb, got {desc}")


# --------------------------------------------------------------------------------------- writing


def encode_png(
    picture_or_rgb: Picture | np.ndarray, *, alpha: np.ndarray | None = None, icc_profile: bytes | None = None
) -> bytes:
    """Lossless PNG bytes carrying only pixels, alpha and an RGB ICC profile.

    Args:
        picture_or_rgb: a :class:`Picture`, or ``(H, W, 3)`` uint8 RGB.
        alpha: ``(H, W)`` uint8; overrides the picture's alpha when given.
        icc_profile: an RGB ICC profile; overrides the picture's when given.

    Returns:
        PNG bytes (RGB, or RGBA with alpha) with no EXIF/GPS, XMP or text chunks: the image is built
        fresh from the arrays, so none of the source file's metadata can ride along. The same input
        always gives the same bytes.
    """
    if isinstance(picture_or_rgb, Picture):
        rgb = picture_or_rgb.rgb
        alpha = picture_or_rgb.alpha if alpha is None else alpha
        icc_profile = picture_or_rgb.icc_profile if icc_profile is None else icc_profile
    else:
        rgb = picture_or_rgb
    _check_rgb(rgb)
    if alpha is not None:
        _check_alpha(alpha, rgb)
    if icc_profile is not None and _icc_space(icc_profile) != "RGB":
        space = _icc_space(icc_profile)
        raise ValueError(f"a PNG of RGB pixels can only carry an RGB ICC profile, not a {space!r} one")
    pixels = rgb if alpha is None else np.dstack([rgb, alpha])
    out = io.BytesIO()
    options = {"icc_profile": icc_profile} if icc_profile else {}
    Image.fromarray(np.ascontiguousarray(pixels)).save(out, format="PNG", **options)
    return out.getvalue()


def save_png(
    picture_or_rgb: Picture | np.ndarray,
    path: str | os.PathLike[str],
    *,
    alpha: np.ndarray | None = None,
    icc_profile: bytes | None = None,
) -> Path:
    """Write :func:`encode_png`'s bytes to ``path`` and return it as a ``Path``."""
    path = Path(path)
    path.write_bytes(encode_png(picture_or_rgb, alpha=alpha, icc_profile=icc_profile))
    return path
