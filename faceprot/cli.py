"""The ``faceprot`` command line.

    faceprot models                 list every model and whether it is available here
    faceprot compare a.jpg b.jpg    score two photos on every evaluator
"""

from __future__ import annotations

import argparse
import sys

from .errors import FaceprotError


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
    from .evaluators import compare_photos, format_table
    from .io import load_image
    from .runtime import configure_threads

    configure_threads()
    a, b = load_image(args.a), load_image(args.b)
    for n in a.notices + b.notices:
        print(f"note: {n}", file=sys.stderr)
    evaluators = args.evaluators.split(",") if args.evaluators else None
    print(format_table(compare_photos(a.rgb, b.rgb, evaluators=evaluators)))
    return 0


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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FaceprotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
