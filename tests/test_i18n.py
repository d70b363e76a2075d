"""The chat server's user-interface texts: one file per language, every key in every language."""

from bot.types import LANGUAGES
from chat_server import i18n
from chat_server.errors import ERROR_CODES


def test_every_language_has_every_key() -> None:
    assert i18n.missing() == []


def test_every_error_code_has_its_text_in_every_language() -> None:
    errors = i18n.by_key("errors")
    assert set(errors) == set(ERROR_CODES)
    for code, texts in errors.items():
        assert set(texts) == set(LANGUAGES)
        assert all(text.strip() for text in texts.values()), code


def test_no_text_is_a_placeholder() -> None:
    for section in ("errors", "console", "audit", "sign_in"):
        for language, texts in i18n.section(section).items():
            for key, text in texts.items():
                assert isinstance(text, str) and text.strip(), f"{language}:{section}.{key}"
                assert "täydennä" not in text and "TODO" not in text, f"{language}:{section}.{key}"
