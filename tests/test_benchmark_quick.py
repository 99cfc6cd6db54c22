"""The cloak benchmark's --quick mode on real LFW faces: the CI bar for the personal cloak.

20 people enroll from one photo each (medium preset, dlib-resnet + mobilefacenet ensemble); their
other photos are protected, saved as PNG, re-read, and searched by every evaluator among all the
other LFW photos. The run itself asserts top-1 PSR >= 50% on every evaluator, >= 20 points above
uniform noise with the same budget, and face-region PSNR >= 28 dB; this test checks that it ran,
passed, and wrote its report, within the 20 minutes the issue allows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from conftest import ROOT, shared_path

LIMIT_S = 20 * 60


@pytest.mark.slow
def test_cloak_benchmark_quick_meets_the_bar():
    faces = shared_path("assets", "faces", "lfw")
    report_path = ROOT / "benchmarks/results/cloak/ci-quick/report.json"
    started = time.time()
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "benchmarks/cloak.py", "--quick", "--faces", str(faces), "--run", "ci-quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=LIMIT_S,
    )
    elapsed = time.perf_counter() - t
    print(proc.stdout[-4000:])
    print(f"benchmarks/cloak.py --quick took {elapsed:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report_path.stat().st_mtime >= started - 1, "the run did not write a fresh report"
    report = json.loads(report_path.read_text())
    m = report["summary"]["methods"]
    assert report["summary"]["people"] == 20
    for ev in ("dlib-cpp", "dlib-resnet", "mobilefacenet"):
        assert m["medium/both"][ev]["top1_png"] >= 0.5
        assert m["medium/both"][ev]["top1_png"] - m["baseline-noise"][ev]["top1_png"] >= 0.2
    assert m["medium/both"]["psnr_face"] >= 28
