"""What faceprot tells people (faceprot.report): the names, the zip, verdicts and caveats that the
app and the command line share."""

from __future__ import annotations

import zipfile

from faceprot.evaluators import Score, role_of
from faceprot.report import (
    apply_verdict, format_table, output_names, score_rows, selfie_output_names, zip_outputs,
)

BOTH = ["dlib-resnet", "mobilefacenet"]


def _score(name, match, surrogates=BOTH, score=0.1):
    role, note = role_of(name, surrogates)
    metric = "l2" if name.startswith("dlib") else "cosine"
    return Score(name, metric, score, 0.6 if metric == "l2" else 0.338, match, role, note)


def test_output_names_follow_the_inputs_and_never_clash():
    assert output_names(["in/party.jpg"]) == ["party-protected.png"]
    # a.jpg and a.png share a stem: the extension tells them apart; the same name in two folders
    # gets a counter; a name with no stem still gets one
    assert output_names(["x/a.jpg", "x/a.png", "y/a.jpg", "b.heic"]) == [
        "a-jpg-protected.png", "a-png-protected.png", "a-jpg-protected-2.png", "b-protected.png"]
    names = selfie_output_names("/tmp/gradio/abc/me.jpg")
    assert names["protected"] == "me-protected.png" and names["mask"] == "me.faceprot"
    assert len(set(names.values())) == 5


def test_zip_holds_each_file_once_by_name(tmp_path):
    files = []
    for n in ("a-protected.png", "b-protected.png"):
        (tmp_path / n).write_bytes(b"\x89PNG\r\n\x1a\n" + n.encode())
        files.append(tmp_path / n)
    z = zip_outputs(files, tmp_path / "out.zip")
    with zipfile.ZipFile(z) as f:
        assert f.namelist() == ["a-protected.png", "b-protected.png"]
        assert f.read("b-protected.png").endswith(b"b-protected.png")


def test_apply_verdict_when_nothing_matches_any_more_names_the_best_case():
    per_photo = {"a.jpg": [_score(n, False) for n in ("dlib-cpp", *BOTH)],
                 "b.jpg": [_score(n, False) for n in ("dlib-cpp", *BOTH)]}
    status = apply_verdict(per_photo, 3, 10, ["c.jpg: not an image"])
    assert status.startswith("Mask applied to 2 of 3 photo(s).")
    assert "No recognizer here matches any of them" in status and "Still recognised" not in status
    assert "best case" in status  # dlib-cpp shares dlib-resnet's weights: nothing here was unseen
    assert status.endswith("Not protected:\n- c.jpg: not an image")
    # with a recognizer the mask never saw in the table, the table is its own evidence
    held_out = {"a.jpg": [_score("dlib-cpp", False, ["mobilefacenet"]), _score("mobilefacenet", False, ["mobilefacenet"])]}
    assert "best case" not in apply_verdict(held_out, 1, 10)


def test_apply_verdict_names_what_still_finds_each_photo_and_what_helps():
    per_photo = {"a.jpg": [_score("dlib-cpp", True), _score("dlib-resnet", False)],
                 "b.jpg": [_score("dlib-cpp", False), _score("dlib-resnet", False)]}
    few = apply_verdict(per_photo, 2, 3)
    assert "Still recognised: 1 of 2" in few and "a.jpg (dlib-cpp)" in few and "b.jpg" not in few
    assert "More refinement steps" in few
    assert "More refinement steps" not in apply_verdict(per_photo, 2, 10)


def test_score_rows_and_the_text_table_agree():
    scores = [_score("dlib-cpp", False, score=0.7123), _score("mobilefacenet", None, score=None)]
    rows = score_rows(scores)
    assert rows[0][:6] == ["dlib-cpp", "black-box", "L2 distance", 0.712, "< 0.600", "no match"]
    assert rows[1][3] is None and rows[1][5] == "no face found"
    text = format_table(scores).splitlines()
    assert text[0].split() == ["evaluator", "role", "metric", "score", "threshold", "verdict"]
    assert "0.712" in text[1] and "< 0.600" in text[1] and text[2].split()[3] == "-"


def test_mask_description_says_the_budget_in_levels_and_where_it_applies():
    from types import SimpleNamespace

    from faceprot.cloak import PerceptualBudget
    from faceprot.report import mask_description

    def mask(rule, eps=8 / 255):
        return SimpleNamespace(budget_rule=lambda: rule, generator="augment", preset="medium", seed=0,
                               surrogates=["dlib-resnet"], eps=eps, eps_high=2 * eps)

    head = mask_description(mask(PerceptualBudget(luma_flat=1.5 / 255, luma_texture=5 / 255, eye_luma=1 / 255)),
                            views=9, seconds=5.0)
    assert head.startswith("Mask made in 5.0 s from 9 views of you (augment); strength medium")
    assert "at most 1.5 of 255 levels on smooth skin, up to 5 in texture" in head and "1 in the eyes" in head
    assert "the background beside your head is left as it is" in head  # head_margin 16, the default
    whole = mask_description(mask(PerceptualBudget(head_margin=0)))
    assert "background" not in whole and "(augment views)" in whole
    v1 = mask_description(mask(None))
    assert "at most 8 of 255 levels, 16 around the eyes" in v1 and "background" not in v1
