"""The ``faceprot`` command line.

    faceprot models                          list every model and whether it is available here
    faceprot compare a.jpg b.jpg             score two photos on every evaluator
    faceprot enroll selfie.jpg -o me.faceprot   make a personal mask from one selfie
    faceprot apply me.faceprot photos/*.jpg -o out/   protect photos with the mask
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import FaceprotError
from .runtime import DEFAULT_REFINE


def _cmd_models(args) -> int:
    from . import registry

    rows = [("model", "available", "where / what is missing", "licence")]
    for key, e in registry.MODELS.items():
        ok, where = registry.availability(key)
        rows.append((key, "yes" if ok else "no", where, e.license))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    if registry.model_dir() is None:
        print(f"\n(no local mirror: set ${registry.MODEL_DIR_ENV} to a folder of <model>/<file>)")
    return 0


def _cmd_compare(args) -> int:
    from .evaluators import compare_photos
    from .io import load_image
    from .report import format_table
    from .runtime import configure_threads

    configure_threads()
    a, b = (_named(args_path, load_image, args_path) for args_path in (args.a, args.b))
    for n in a.notices + b.notices:
        print(f"note: {n}", file=sys.stderr)
    evaluators = args.evaluators.split(",") if args.evaluators else None
    try:
        scores = compare_photos(a.rgb, b.rgb, evaluators=evaluators)
    except FaceprotError as e:  # "Photo A: ..." -> the file's name
        msg = str(e)
        for label, path in (("A", args.a), ("B", args.b)):
            msg = msg.replace(f"Photo {label}:", f"{path}:")
        raise FaceprotError(msg) from None
    print(format_table(scores))
    return 0


def _named(path, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, its errors naming the photo at ``path``."""
    try:
        return fn(*args, **kwargs)
    except FaceprotError as e:
        msg = str(e)
        raise type(e)(msg if str(path) in msg or Path(path).name in msg else f"{path}: {msg}") from None


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff", ".gif"}


def _cmd_enroll(args) -> int:
    from tqdm import tqdm

    from . import report
    from .cloak import apply_mask, enroll
    from .protect import locate
    from .runtime import configure_threads

    configure_threads()
    out = Path(args.output or Path(args.selfie).with_suffix(".faceprot").name)
    if out.exists() and not args.force:
        raise FaceprotError(f"{out} already exists; choose another name with -o, or pass --force.")
    surrogates = args.surrogates.split(",") if args.surrogates else None
    located = _named(args.selfie, locate, args.selfie, "largest")  # read and detected once
    bar = tqdm(total=100, desc="enroll", unit="%", bar_format="{l_bar}{bar}| {postfix}")
    state = {"n": 0}

    def progress(fraction: float, message: str) -> None:
        n = int(round(100 * fraction))
        bar.update(max(0, n - state["n"]))
        state["n"] = max(state["n"], n)
        bar.set_postfix_str(message)

    try:
        result = enroll(located.picture, face=located.chosen[0], preset=args.strength, seed=args.seed,
                        generator=args.generator, n_views=args.views, surrogates=surrogates,
                        store_identity=args.remember_me, progress=progress, device=args.device)
    finally:
        bar.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    result.mask.save(out)
    m = result.mask
    print(f"saved {out}. " + report.mask_description(m, len(result.views.images), result.seconds["total"]))
    if m.identity:
        print("note: " + report.IDENTITY_STORED)
    if args.maps:
        from PIL import Image

        d = Path(args.maps)
        d.mkdir(parents=True, exist_ok=True)
        for name, img in result.teaching_maps().items():
            Image.fromarray(img).save(d / f"{name.split(' ')[0]}.png")
        # as `faceprot apply` protects a photo by default
        (d / "protected-selfie.png").write_bytes(apply_mask(located, m, refine=DEFAULT_REFINE, seed=args.seed,
                                                            device=args.device).png())
        print(f"teaching maps and the protected selfie written to {d}/")
    return 0


def _photo_list(items: list[str]) -> list:
    photos = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            photos += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            photos.append(p)
    return photos


def _cmd_apply(args) -> int:
    from .cloak import PersonalMask, apply_mask
    from .report import output_names
    from .runtime import configure_threads, resolve_device

    configure_threads()
    mask = PersonalMask.load(args.mask)
    device = resolve_device(args.device) if args.refine > 0 else None  # a bad --device fails once, here
    photos = _photo_list(args.photos)
    if not photos:
        raise FaceprotError("No photos given (folders are searched for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ").")
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    faces = args.faces
    if faces not in ("largest", "all", "me"):
        try:
            faces = [int(v) for v in faces.split(",")]
        except ValueError:
            raise FaceprotError(f"--faces must be largest, all, me or face numbers like 0,2; not {faces!r}.") from None
    targets = [out_dir / n for n in output_names(photos)]
    def protect(p, target):
        result = apply_mask(p, mask, faces=faces, refine=args.refine, seed=args.seed, device=device)
        target.write_bytes(result.png())
        h, w = result.picture.rgb.shape[:2]
        note = ("; " + " ".join(result.notices)) if result.notices else ""
        return f"{len(result.faces)} face(s) protected, {w}x{h}", note

    return _each_photo(photos, targets, args.force, protect, "apply", "protected", out_dir)


def gpu_failure(e: BaseException) -> FaceprotError | None:
    """A clear error for a GPU that failed mid-run (out of memory, a CUDA error), or None when
    ``e`` is not one (other errors are bugs and keep their traceback)."""
    import torch

    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return FaceprotError(f"the GPU ran out of memory ({first}). Run again with --device cpu (slower), "
                             "or close what else uses the GPU.")
    if isinstance(e, RuntimeError) and any(k in str(e) for k in ("CUDA", "cuDNN", "CUBLAS")):
        return FaceprotError(f"the GPU failed ({first}). Run again with --device cpu (slower).")
    return None


def _each_photo(photos, targets, force: bool, work, desc: str, done: str, out_dir: Path) -> int:
    """The per-photo loop of apply and disguise: ``work(photo, target) -> (what, note)`` writes
    one output; a photo that fails (a bad file, a GPU that fails on it) is named in a FAIL line and
    the others still go on. Exit status 1 if any failed."""
    import time

    from tqdm import tqdm

    failures, lines = [], []
    for p, target in zip(tqdm(photos, desc=desc, unit="photo"), targets):
        t = time.perf_counter()
        try:
            if target.exists() and not force:
                raise FaceprotError(f"{target} already exists (pass --force to overwrite)")
            what, note = work(p, target)
            lines.append(f"ok    {p} -> {target}: {what}, {time.perf_counter() - t:.2f} s{note}")
        except (FaceprotError, OSError) as e:
            failures.append(p)
            lines.append(f"FAIL  {p}: {e}")
        except RuntimeError as e:
            clear = gpu_failure(e)
            if clear is None:  # not the GPU: a bug, with its traceback
                raise
            failures.append(p)
            lines.append(f"FAIL  {p}: {clear}")
    for line in lines:
        print(line)
    print(f"{len(photos) - len(failures)} of {len(photos)} photo(s) {done}, written to {out_dir}/")
    if failures:
        print(f"{len(failures)} failed: " + ", ".join(str(f) for f in failures), file=sys.stderr)
        return 1
    return 0


def _cmd_disguise(args) -> int:
    from .disguise.engine import check_emotion, disguise
    from .io import load_image
    from .report import name_in_message, output_names
    from .runtime import configure_threads, resolve_device

    configure_threads()
    check_emotion(args.emotion)  # an unknown or unoffered emotion fails once, before any photo
    device = resolve_device(args.device)
    engine = args.engine
    if engine == "diffusion":
        from .disguise import diffusion

        why = diffusion.why_not_offered(gpu=device.type == "cuda")
        if why:  # the app's sentence; the photos are still disguised
            print(f"note: {why} Using the warp engine instead.", file=sys.stderr)
            engine = "warp"
    photos = _photo_list(args.photos)
    if not photos:
        raise FaceprotError("No photos given (folders are searched for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ").")
    target = None
    if args.target:  # a bad target, or one without a face, fails once, naming it
        from .disguise.engine import target_embeddings
        from .recognizers import default_surrogates, load_surrogate

        try:
            target = target_embeddings(load_image(args.target), [load_surrogate(n, device) for n in default_surrogates()],
                                       f"target photo {Path(args.target).name}")
        except FaceprotError as e:
            raise type(e)(name_in_message(str(e), args.target)) from None
    one_file = len(photos) == 1 and str(args.output).lower().endswith(".png")
    out_dir = Path(args.output).parent if one_file else Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [Path(args.output)] if one_file else [out_dir / n.replace("-protected", f"-{args.emotion}", 1)
                                                    for n in output_names(photos)]
    overrides = {"steps": args.steps} if args.steps else {}
    def disguised(p, out):
        if engine == "diffusion":
            result = diffusion.disguise(p, args.emotion, target=target, seed=args.seed, device=device, **overrides)
        else:
            result = disguise(p, args.emotion, target=target, strength=args.strength, seed=args.seed,
                              device=device, **overrides)
        out.write_bytes(result.png())
        return f"{len(result.faces)} face(s)", ""

    return _each_photo(photos, targets, args.force, disguised, "disguise", "disguised", out_dir)


DEVICE_HELP = "where the optimisation runs: auto (a GPU if there is one), cpu or cuda (default auto)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceprot", description="Protect face photos from face recognition.")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("models", help="list every model and whether it is available here")
    m.set_defaults(func=_cmd_models)
    c = sub.add_parser("compare", help="score two photos on every evaluator")
    c.add_argument("a", help="first photo")
    c.add_argument("b", help="second photo")
    c.add_argument("--evaluators", help="comma-separated evaluator names (default: all available)")
    c.set_defaults(func=_cmd_compare)

    e = sub.add_parser("enroll", help="make a personal mask from one selfie")
    e.add_argument("selfie", help="a photo of you (the largest face is used)")
    e.add_argument("-o", "--output", help="mask file to write (default: <selfie name>.faceprot)")
    e.add_argument("--strength", choices=["low", "medium", "high", "paper"], default="medium",
                   help="stronger protection is more visible (default: medium). low, medium and high change "
                        "mostly brightness, little colour, almost nothing in the eyes and nothing beside the "
                        "head; paper is the "
                        "published method's setting (an RGB box, plainly visible up close), for comparison")
    e.add_argument("--seed", type=int, default=0, help="same selfie + same seed = same mask (default 0)")
    e.add_argument("--generator", choices=["augment", "arc2face"], default="augment",
                   help="how to make varied views: augment (CPU) or arc2face (GPU, Hub weights)")
    e.add_argument("--views", type=int, default=8, help="views besides the selfie (default 8)")
    e.add_argument("--surrogates", help="comma-separated recognizers to optimise against (default: ensemble)")
    e.add_argument("--remember-me", action="store_true",
                   help="store your face embedding in the mask, to protect only your face in group photos")
    e.add_argument("--maps", metavar="DIR", help="also write the teaching maps and protected selfie here")
    e.add_argument("--force", action="store_true", help="overwrite an existing mask file")
    e.add_argument("--device", default="auto", help=DEVICE_HELP)
    e.set_defaults(func=_cmd_enroll)

    a = sub.add_parser("apply", help="protect photos with a personal mask")
    a.add_argument("mask", help="a .faceprot mask file from `faceprot enroll`")
    a.add_argument("photos", nargs="+", help="photos or folders of photos")
    a.add_argument("-o", "--output", default="protected", help="output folder (default: protected/)")
    a.add_argument("--faces", default="largest",
                   help="largest (default), all, me (needs --remember-me at enrollment), or numbers like 0,2")
    a.add_argument("--refine", type=int, default=DEFAULT_REFINE,
                   help="per-photo refinement steps: each photo's cloak becomes its own and keeps "
                        f"protecting if someone estimates the mask and subtracts it (default {DEFAULT_REFINE}, "
                        "about 1 s per face on a CPU; 0: the mask as it is, in milliseconds)")
    a.add_argument("--seed", type=int, default=0, help="seed of the refinement (default 0)")
    a.add_argument("--device", default="auto", help=DEVICE_HELP.replace("optimisation", "refinement"))
    a.add_argument("--force", action="store_true", help="overwrite existing outputs")
    a.set_defaults(func=_cmd_apply)

    d = sub.add_parser("disguise", help="give faces an expression that face recognition does not match "
                                        "(the emotion disguise)")
    d.add_argument("photos", nargs="+", help="photos or folders of photos")
    d.add_argument("--emotion", default="happy", help="the expression to give (offered now: happy)")
    d.add_argument("--target", help="a photo of someone to be matched to instead (default: just not you)")
    d.add_argument("-o", "--output", default="disguised",
                   help="output folder (default: disguised/), or a .png file name for one photo")
    d.add_argument("--engine", choices=["warp", "diffusion"], default="warp",
                   help="warp (default): a landmark warp and a little noise; a CPU is enough. diffusion: the "
                        "face edited through a diffusion model; experimental: its quality has not been measured. "
                        "It needs a GPU (--device auto or cuda) and its weights (google/ddpm-ema-celebahq-256, "
                        "and models/antelopev2/1k3d68.onnx from lithiumice/insightface; `faceprot models` says "
                        "which are here). Without them the warp engine runs instead and a note on stderr says "
                        "why (not an error: the exit status is as for warp)")
    d.add_argument("--strength", choices=["low", "medium", "high"], default="medium",
                   help="the warp engine's additive budget: 2, 4 (default) or 8 levels of 255")
    d.add_argument("--seed", type=int, default=0, help="same photo + same seed = same output (default 0)")
    d.add_argument("--steps", type=int, help="optimisation steps (default: the engine's, warp 40, diffusion 60)")
    d.add_argument("--device", default="auto", help=DEVICE_HELP)
    d.add_argument("--force", action="store_true", help="overwrite existing outputs")
    d.set_defaults(func=_cmd_disguise)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FaceprotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # a GPU that fails while enrolling, or before the first photo
        clear = gpu_failure(e)
        if clear is None:
            raise
        print(f"error: {clear}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
