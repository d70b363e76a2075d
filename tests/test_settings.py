"""The settings registry is the one place settings live, and every one is documented."""

import re
import subprocess
import sys

import pytest

from bot.settings import PROJECT_ROOT, Settings, SettingsError, registry, settings_markdown

SOURCE_DIRS = ("bot", "chat_server", "benchmarks", "scripts")


def test_every_setting_has_type_default_and_help():
    for name, setting in registry().items():
        assert name.startswith("POLKU_"), name
        assert setting.help and len(setting.help) > 15, f"{name} needs a help text"
        assert setting.default is not None


def test_docs_settings_md_is_generated_from_the_registry():
    doc = (PROJECT_ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert doc == settings_markdown(), "docs/settings.md is stale: run python -m bot settings-doc > docs/settings.md"
    for name in registry():
        assert f"`{name}`" in doc


def test_code_reads_no_unregistered_setting():
    known = set(registry())
    used = set()
    for folder in SOURCE_DIRS:
        for path in (PROJECT_ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".sh", ".js") and "node_modules" not in path.parts:
                used |= set(re.findall(r"\bPOLKU_[A-Z0-9_]+\b", path.read_text(encoding="utf-8", errors="ignore")))
    polku_script = (PROJECT_ROOT / "polku").read_text(encoding="utf-8")
    used |= set(re.findall(r"\bPOLKU_[A-Z0-9_]+\b", polku_script))
    assert used - known == set(), f"settings read but not registered: {sorted(used - known)}"


def test_environment_values_are_typed_and_checked():
    settings = Settings({"POLKU_PORT": "9000", "POLKU_ALLOWED_ORIGINS": "https://a.fi, https://b.fi",
                         "POLKU_FALLBACK_THRESHOLD": "0.6"})
    assert settings.port == 9000
    assert settings.allowed_origins == ["https://a.fi", "https://b.fi"]
    assert settings.fallback_threshold == pytest.approx(0.6)
    with pytest.raises(SettingsError, match="POLKU_PORT"):
        Settings({"POLKU_PORT": "eighty"})
    with pytest.raises(SettingsError, match="POLKU_DEFAULT_LANGUAGE"):
        Settings({"POLKU_DEFAULT_LANGUAGE": "de"})


def test_settings_doc_cli_prints_the_reference():
    out = subprocess.run([sys.executable, "-m", "bot", "settings-doc"], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, check=True).stdout
    assert out == settings_markdown()
