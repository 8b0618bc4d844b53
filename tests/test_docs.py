from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.conftest import ROOT
from triage.settings import Settings

README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
# A markdown link or image target: [text](target) or [text](target "title").
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SETTING = re.compile(r"\bTRIAGE_[A-Z][A-Z0-9_]*[A-Z0-9]")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _readme_test_command() -> str:
    """The test command of the README's "Two commands" block, its comment stripped."""
    readme = _read(README)
    section = readme.split("\n## Two commands", 1)
    assert len(section) == 2, "README has no '## Two commands' section"
    block = re.search(r"```[a-z]*\n(.*?)```", section[1], re.DOTALL)
    assert block is not None, "the 'Two commands' section has no code block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    commands = [line for line in lines if line.startswith("make test")]
    assert len(commands) == 1, f"expected one 'make test' line in the two-commands block, got {commands}"
    return commands[0]


def test_readme_documents_every_setting() -> None:
    """docs/configuration.md lists every setting, and the README points there."""
    configuration = _read(CONFIGURATION)
    missing = [name for name in Settings.model_fields if f"`TRIAGE_{name.upper()}`" not in configuration]
    assert not missing, f"docs/configuration.md lacks: {missing}"
    assert "(docs/configuration.md)" in _read(README), "README does not link to docs/configuration.md"


def test_docs_name_only_real_settings() -> None:
    """A renamed or removed setting does not live on in the README or the configuration table."""
    known = {f"TRIAGE_{name.upper()}" for name in Settings.model_fields}
    for path in (README, CONFIGURATION):
        unknown = sorted(set(SETTING.findall(_read(path))) - known)
        assert not unknown, f"{path.relative_to(ROOT)} names settings that do not exist: {unknown}"


def test_ci_runs_the_readme_test_command() -> None:
    command = _readme_test_command()
    ci = _read(ROOT / ".ci" / "run")
    steps = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert steps, ".ci/run runs nothing"
    assert steps[-1] == command, f".ci/run ends with {steps[-1]!r}, the README's test command is {command!r}"


def test_make_test_runs_lint_types_and_the_suite() -> None:
    """`make -n` only prints the recipe; the printed commands must include every check the README promises."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES"}}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "test"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    for check in (r"ruff check\b", r"ruff format --check\b", r"mypy\b", r"pytest\b"):
        pattern = re.compile(rf"(^|[\s/]){check}")
        assert any(pattern.search(line) for line in printed), f"`make test` runs no `{check}`:\n{result.stdout}"


def test_readme_is_short_and_its_links_resolve() -> None:
    size = README.stat().st_size
    assert size < 20_000, f"README.md is {size} bytes; move depth to docs/"
    broken = []
    for target in LINK.findall(_read(README)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor in the README itself
        path = target.split("#", 1)[0]
        if not (ROOT / path).exists():
            broken.append(target)
    assert not broken, f"README.md links to files that do not exist: {broken}"


def test_settings_read_a_dotenv_file_in_the_working_directory(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".env").write_text("TRIAGE_REPLY_DAYS=7\nTRIAGE_LLM_API_KEY=sk-from-dotenv\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.reply_days == 7
    assert settings.llm_api_key is not None and settings.llm_api_key.get_secret_value() == "sk-from-dotenv"
    assert "sk-from-dotenv" not in repr(settings)  # keys are secrets
