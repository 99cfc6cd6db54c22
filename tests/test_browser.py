"""The demo in a real browser (headless Chromium from Debian, driven by Playwright), against the
real server, at 1400 px and at 390 px (a phone). Screenshots go to test-artifacts/.

Each step checks what a person looks for: the verdict line, the images, the message text, and
that a table never needs sideways scrolling or splits a word or number across lines on a phone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import ROOT, _require_shared

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio")

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.slow

# Per table: its width against its scroll width, its right edge against its column's, and every word
# or number whose glyphs sit on more than one line (a Range over the word reports rectangles at two
# heights).
MEASURE_TABLES = """
() => Array.from(document.querySelectorAll('table.fp-scores')).filter(t => t.offsetParent !== null).map(t => {
  const split = [];
  const walker = document.createTreeWalker(t, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    for (const m of n.textContent.matchAll(/\\S+/g)) {
      const r = document.createRange();
      r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
      const tops = new Set(Array.from(r.getClientRects()).filter(q => q.width > 0).map(q => Math.round(q.top)));
      if (tops.size > 1) split.push(m[0]);
    }
  }
  const box = t.closest('.column') || t.parentElement;
  return {scrollWidth: t.scrollWidth, width: t.getBoundingClientRect().width, split,
          right: t.getBoundingClientRect().right, box_right: box.getBoundingClientRect().right};
})
"""


@pytest.fixture(scope="module")
def server(request):
    if CHROMIUM is None:
        msg = "needs Debian's chromium (the README's test command installs it)"
        if _require_shared():
            pytest.fail(msg + " (CI=true: a missing browser fails the run)")
        pytest.skip(msg)
    return request.getfixturevalue("app_url")


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(120_000)
        pg.goto(server)
        pg.get_by_role("tab", name="Protect my face").wait_for()
        yield pg
        browser.close()


def _phone_check(pg, name: str) -> None:
    """Screenshots at 1400 and 390 px. At both, every table fits its box (nothing cut off or
    scrolled sideways) and no word or number is split across lines; at 390 px it is 390 px wide."""
    for width, height in ((1400, 1000), (390, 844)):
        pg.set_viewport_size({"width": width, "height": height})
        pg.wait_for_timeout(500)
        pg.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        tables = pg.evaluate(MEASURE_TABLES)
        assert tables, f"{name}: no score table is shown"
        for t in tables:
            assert t["scrollWidth"] <= t["width"] + 1 and t["right"] <= t["box_right"] + 1, (name, width, t)
            assert t["scrollWidth"] <= width, (name, width, t)
            assert not t["split"], (name, width, t["split"])
        page_width = pg.evaluate("() => document.documentElement.scrollWidth")
        assert page_width <= width, f"{name}: the page scrolls sideways at {width} px ({page_width} px)"
    pg.set_viewport_size({"width": 1400, "height": 1000})


def test_the_page_opens_on_protect_with_its_intro_and_limits(page):
    assert page.get_by_role("tab", name="Protect my face").get_attribute("aria-selected") == "true"
    assert page.get_by_text("upload one selfie").is_visible()
    page.get_by_text("What this can and cannot do").first.click()
    page.get_by_text("No cloak is a guarantee").wait_for(state="visible", timeout=10_000)
    # the strength help shows each strength's look and links the measured figures
    page.get_by_text("How strong, and how visible?").first.click()
    page.get_by_text("visible up close today").wait_for(state="visible", timeout=10_000)
    link = page.get_by_role("link", name="BENCHMARKS.md")
    got = page.request.get(page.evaluate("(a) => a.href", link.element_handle()))
    assert got.ok and got.text().startswith("# Benchmarks")
    page.get_by_text("How strong, and how visible?").first.click()


def test_a_non_image_shows_faceprots_sentence_beside_the_button(page, tmp_path):
    notes = tmp_path / "holiday-notes.txt"
    notes.write_text("not a photo at all")
    page.get_by_role("tab", name="Protect my face").click()
    page.locator("input[type=file]").first.set_input_files(str(notes))
    # beside the button, in faceprot's words (a pop-up says it too)
    page.get_by_text("Error: holiday-notes.txt is not an image faceprot can read").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "protect-non-image-1400.png"), full_page=True)
    page.locator("button[aria-label='Clear']").first.click()  # leave the selfie empty again


def test_protect_an_example(page):
    page.get_by_role("tab", name="Protect my face").click()
    page.get_by_text("Obama, attack both").click()
    verdict = page.get_by_text("never-attacked recognizers still match you")
    verdict.wait_for()
    assert "your selfie, compared with its own protected copy" in verdict.inner_text()
    table = page.locator("table.fp-scores").first
    assert table.is_visible()
    cells = table.locator("td").all_inner_texts()
    assert {"dlib\u2011cpp", "dlib\u2011resnet", "mobilefacenet"} <= set(cells), cells
    _phone_check(page, "protect")


def test_the_protect_button_is_disabled_while_it_runs_and_progress_shows_beside_it(page):
    """The selfie the example left in place, protected again with the button: it cannot be
    clicked twice, and the progress shows in the status line under it."""
    page.get_by_role("tab", name="Protect my face").click()
    button = page.get_by_role("button", name="Protect", exact=True)
    assert button.is_enabled()
    button.click()
    page.wait_for_function("(b) => b.disabled", arg=button.element_handle(), timeout=10_000)
    page.get_by_text("Optimising the mask").first.wait_for(timeout=60_000)  # the progress text
    page.wait_for_function("(b) => !b.disabled", arg=button.element_handle())
    assert page.get_by_text("never-attacked recognizers still match you").first.is_visible()


def test_apply_the_example_mask_to_two_photos(page):
    page.get_by_role("tab", name="Apply my mask").click()
    page.get_by_text("Obama's mask on two photos").click()
    page.get_by_text("On obama-1.jpg, compared with its own protected copy:").wait_for()
    assert page.get_by_text("On obama-2.jpg, compared with its own protected copy:").is_visible()
    assert page.get_by_text("Mask applied to 2 of 2 photo(s).").is_visible()
    _phone_check(page, "apply")


def test_check_two_people(page):
    page.get_by_role("tab", name="Check").click()
    page.get_by_text("Obama and Biden").click()
    line = page.get_by_text("recognizers say these show the same person")
    line.wait_for()
    assert "obama-1.jpg and biden.jpg: 0 of 3" in line.inner_text()
    _phone_check(page, "check")
