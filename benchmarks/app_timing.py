"""How long the demo takes a person: protect-and-score, from the click to the verdict line.

Starts the real app on a free local port, opens it in headless Chromium (Debian's, driven by
Playwright), uploads the example selfie as a file (so the example cache is bypassed), keeps the
defaults (medium, both recognizers attacked, seed 0) and clicks Protect, ``--runs`` times. Each
time runs from the click until the verdict line is on the page. The first run is cold (models
load); the acceptance figure is the second.

    python benchmarks/app_timing.py                 # 3 runs, prints the times, writes JSON
    python benchmarks/app_timing.py --runs 2 --out /tmp/t.json --photo me.jpg
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", default=str(ROOT / "examples" / "obama-selfie.jpg"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "app_timing.json"))
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("needs Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    import app

    app.demo.queue(default_concurrency_limit=1).launch(server_name="127.0.0.1", server_port=_free_port(),
                                                       prevent_thread_lock=True, quiet=True)
    times = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(300_000)
            page.goto(app.demo.local_url)
            page.get_by_role("tab", name="Protect my face").wait_for()
            page.locator("input[type=file]").first.set_input_files(args.photo)
            page.get_by_text("as faceprot reads it").first.wait_for()
            button = page.get_by_role("button", name="Protect", exact=True)
            enabled = ("() => { const b = Array.from(document.querySelectorAll('button'))"
                       ".find(x => x.innerText.trim() === 'Protect'); return b && !b.disabled; }")
            for run in range(args.runs):
                t = time.perf_counter()
                button.click()
                # the button is disabled while the event runs, then the verdict line is shown
                page.wait_for_function(f"() => !({enabled})()")
                page.wait_for_function(f"() => ({enabled})() && document.body.innerText.includes('still match you')")
                times.append(time.perf_counter() - t)
                print(f"run {run + 1}: {times[-1]:.1f} s from the click to the verdict line"
                      + (" (cold)" if run == 0 else ""), flush=True)
            browser.close()
    finally:
        app.demo.close()
    result = {"photo": Path(args.photo).name, "runs_s": times, "warm_s": times[1:] or None,
              "machine": f"{platform.node()}, {platform.processor() or platform.machine()}",
              "date": datetime.date.today().isoformat(), "command": " ".join(["python", "benchmarks/app_timing.py"]
                                                                               + (argv or sys.argv[1:]))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
