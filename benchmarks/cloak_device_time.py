"""How long the universal-cloak optimisation takes on a device (the CPU, or a CUDA GPU).

Enrollment's optimisation at its real size: 9 canonical views (the selfie plus 8, as the app
makes), both default surrogates, the real-life chain and the view warp, for each preset. The views
are real LFW faces (one person's photos, as they are, mirrored and shifted); the timing does not
depend on who they show. Detection and view generation are not timed (they run on the CPU).

    python benchmarks/cloak_device_time.py --device cpu
    python benchmarks/cloak_device_time.py --device cuda --faces-npz aligned.npz

``--faces-npz`` reads faces aligned by ``tests/aligned_faces.py`` (for a GPU machine without
dlib's landmark model); without it the faces are detected in ../shared's LFW.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _common  # noqa: E402,F401  (the model mirror in ../shared)
from aligned_faces import ENV, aligned_people  # noqa: E402

from faceprot.cloak.anchors import AnchorGallery, choose_anchors  # noqa: E402
from faceprot.cloak.enroll import PRESETS, config_for  # noqa: E402
from faceprot.cloak.focus import budget_map  # noqa: E402
from faceprot.cloak.optimizer import UniversalCloak  # noqa: E402
from faceprot.recognizers import DEFAULT_SURROGATES, load_surrogate  # noqa: E402
from faceprot.runtime import configure_threads, resolve_device  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--faces-npz", help="aligned faces from tests/aligned_faces.py")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per preset, after one warm-up")
    args = ap.parse_args(argv)
    threads = configure_threads()
    dev = resolve_device(args.device)
    if args.faces_npz:
        os.environ[ENV] = args.faces_npz
        people = aligned_people()
    else:
        from faceprot.datasets import load_faceset

        people = aligned_people(load_faceset(_common.SHARED_FACES / "lfw"))
    names = list(people)
    faces, marks = people[names[0]]
    views = np.concatenate([faces, faces[:, :, ::-1], np.roll(faces, 3, axis=2)])[:9]
    x = torch.from_numpy(np.ascontiguousarray(views)).permute(0, 3, 1, 2).float() / 255
    models = [load_surrogate(n, dev) for n in DEFAULT_SURROGATES]
    gallery = AnchorGallery.from_images(np.concatenate([people[n][0][:1] for n in names[1:]]))
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {threads} torch thread(s)"
    print(f"device: {dev} ({where}); torch {torch.__version__}; {len(x)} views of 256x256; "
          f"surrogates {', '.join(DEFAULT_SURROGATES)}")
    for preset in ("medium", "high"):
        cfg = config_for(preset)
        focus = budget_map(faces[0], marks[0], cfg.eps, cfg.eps_high)
        budget = torch.from_numpy(focus.budget)[None]
        cloak = UniversalCloak(models, cfg)
        person = cloak.person_embeddings(x)
        anchors = choose_anchors(person, models, gallery)
        times = []
        for k in range(args.repeats + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
            t = time.perf_counter()
            cloak(x, budget, anchors, person, seed=k)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t)
        mem = f", peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB" if dev.type == "cuda" else ""
        print(f"{preset}: {PRESETS[preset]['iterations']} iterations, first run {times[0]:.2f} s, "
              f"warm median {statistics.median(times[1:]):.3f} s over {args.repeats}{mem}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
