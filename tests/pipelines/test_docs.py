"""The user docs stay true: the configuration reference is the config dataclasses', the README is a short user's
guide whose links resolve, and no user doc names an issue or a session."""

from __future__ import annotations

import re
from pathlib import Path

from pipelines import config_docs

ROOT = Path(__file__).resolve().parents[2]
USER_DOCS = [ROOT / "README.md", ROOT / "data" / "README.md"] + sorted(
    p for p in (ROOT / "docs").glob("*.md") if p.name != "benchmarks.md")


def test_the_configuration_reference_is_generated_from_the_dataclasses():
    committed = (ROOT / "docs" / "configuration.md").read_text("utf-8")
    assert committed == config_docs.render(), "docs/configuration.md is stale: run `make docs`"


def test_the_configuration_reference_has_every_key_of_every_section():
    from pipelines.stages.run import SECTIONS

    text = config_docs.render()
    for section, classes in SECTIONS.items():
        part = text.split(f"## `{section}`", 1)[1].split("\n## ", 1)[0]
        for key, flag, _, _ in config_docs.key_rows(classes):
            assert f"| `{key}` | `{flag}` |" in part, (section, key)


def test_the_readme_is_a_users_guide_under_250_lines_with_its_sections():
    text = (ROOT / "README.md").read_text("utf-8")
    assert len(text.splitlines()) < 250
    for heading in ("## Set up", "## Quickstart", "## Your own task", "## The SST-2 recipe", "## Commands",
                    "## The run directory", "## Serve a student", "## When it fails"):
        assert heading in text, heading
    assert text.count("make demo") >= 1 and "make test" in text


def test_links_between_the_docs_resolve():
    for doc in USER_DOCS + [ROOT / "docs" / "benchmarks.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text("utf-8")):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"


def test_user_docs_name_no_issue_numbers_or_sessions():
    for doc in USER_DOCS:
        text = doc.read_text("utf-8")
        assert not re.search(r"(?<![\w/`])#\d{1,3}\b", text), f"{doc.name} names an issue"
        assert not re.search(r"\bsessions?\b", text, re.I), f"{doc.name} speaks of sessions"


def readme_commands() -> list[str]:
    """The commands of the README's blocks marked `<!-- readme-test: run -->`, in order."""
    text = (ROOT / "README.md").read_text("utf-8")
    blocks = re.findall(r"<!-- readme-test: run -->\n```bash\n(.*?)```", text, re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_readmes_commands_run_as_pasted(tmp_path):
    """The stage-by-stage commands and the serving ones, as a user pastes them from the repository root (real
    spaCy, the real MiniLM-L6 backbone fine-tuned, the demo files read as a task of one's own)."""
    import os
    import subprocess
    import sys

    commands = readme_commands()
    assert any(c.startswith("distill augment") for c in commands) and any("predict.py" in c for c in commands)
    (tmp_path / "data").symlink_to(ROOT / "data")  # the README's paths are relative to the repository root
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TQDM_DISABLE": "1", "DISTILL_CACHE": str(tmp_path / "cache")}
    outputs = []
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
        outputs.append(done.stdout)
    evaluated = outputs[[i for i, c in enumerate(commands) if c.startswith("distill eval")][0]]
    assert evaluated.startswith("eval reviews:") and "accuracy" in evaluated
    predicted = outputs[-1].strip().splitlines()
    assert len(predicted) == 2 and all('"label"' in line for line in predicted)
