from __future__ import annotations

from tests.conftest import ROOT
from triage.settings import Settings


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"`TRIAGE_{name.upper()}`" not in readme]
    assert not missing, f"README configuration table lacks: {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in readme and "make test" in ci


def test_settings_read_a_dotenv_file_in_the_working_directory(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".env").write_text("TRIAGE_REPLY_DAYS=7\nTRIAGE_LLM_API_KEY=sk-from-dotenv\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.reply_days == 7
    assert settings.llm_api_key is not None and settings.llm_api_key.get_secret_value() == "sk-from-dotenv"
    assert "sk-from-dotenv" not in repr(settings)  # keys are secrets
