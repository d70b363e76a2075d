"""Resident-facing texts of the ``error`` event, in fi, sv and en.

The admins' wording lives in ``training_data/responses.yml`` (``error_<code>``)
and is used when the bot's content has it; this table is the fallback that
always exists, so an error can be explained even when the content is broken
or does not know a code yet.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from bot.types import LANGUAGES

from .errors import ERROR_CODES

log = logging.getLogger(__name__)

ERROR_TEXTS: dict[str, dict[str, str]] = {
    "message_too_long": {
        "fi": "Viestisi on liian pitkä. Jaa se useampaan lyhyempään viestiin.",
        "sv": "Ditt meddelande är för långt. Dela upp det i flera kortare meddelanden.",
        "en": "Your message is too long. Please split it into shorter messages.",
    },
    "rate_limited": {
        "fi": "Lähetit monta viestiä lyhyessä ajassa. Odota hetki ja yritä sitten uudelleen.",
        "sv": "Du skickade många meddelanden på kort tid. Vänta en stund och försök sedan igen.",
        "en": "You sent many messages in a short time. Please wait a moment and try again.",
    },
    "unknown_session": {
        "fi": "Keskustelua ei löytynyt. Aloitetaan uusi keskustelu.",
        "sv": "Chatten hittades inte. Vi börjar en ny chatt.",
        "en": "The chat could not be found. Let's start a new one.",
    },
    "malformed_payload": {
        "fi": "Viestiä ei voitu käsitellä. Yritä lähettää se uudelleen.",
        "sv": "Meddelandet kunde inte behandlas. Försök skicka det igen.",
        "en": "The message could not be processed. Please try sending it again.",
    },
    "unknown_event": {
        "fi": "Toimintoa ei tunnistettu. Päivitä sivu ja yritä uudelleen.",
        "sv": "Åtgärden kändes inte igen. Ladda om sidan och försök igen.",
        "en": "The action was not recognised. Please reload the page and try again.",
    },
    "callback_invalid": {
        "fi": "Soittopyyntöä ei voitu tallentaa. Tarkista puhelinnumero ja anna lupa yhteystietojesi käyttöön.",
        "sv": "Begäran om samtal kunde inte sparas. Kontrollera telefonnumret och ge ditt samtycke till att dina kontaktuppgifter används.",
        "en": "The call-back request could not be saved. Please check the phone number and give your consent to the use of your contact details.",
    },
    "too_many_connections": {
        "fi": "Samasta verkosta on juuri nyt auki liian monta chattia, joten tämä ei saanut yhteyttä. "
              "Sulje muita chat-ikkunoita tai yritä hetken päästä uudelleen. Hätätilanteessa soita 112.",
        "sv": "Det är för många chattar öppna från samma nätverk just nu, så den här fick ingen anslutning. "
              "Stäng andra chattfönster eller försök igen om en stund. I en nödsituation ring 112.",
        "en": "Too many chats are open from the same network right now, so this one could not connect. "
              "Please close other chat windows or try again in a moment. In an emergency, call 112.",
    },
    "queue_limited": {
        "fi": "Samasta verkosta odottaa jo useampi keskustelu ohjaajaa, joten tämä ei vielä päässyt jonoon. "
              "Yritä uudelleen muutaman minuutin päästä. Voit sillä välin kysyä chatbotilta. "
              "Hätätilanteessa soita 112.",
        "sv": "Flera chattar från samma nätverk väntar redan på en rådgivare, så den här kom inte in i kön ännu. "
              "Försök igen om några minuter. Under tiden kan du fråga chattboten. "
              "I en nödsituation ring 112.",
        "en": "Several chats from the same network are already waiting for a counsellor, so this one could not "
              "join the queue yet. Please try again in a few minutes. Meanwhile you can ask the chatbot. "
              "In an emergency, call 112.",
    },
    "server_busy": {
        "fi": "Palvelussa on juuri nyt ruuhkaa. Yritä hetken päästä uudelleen. Hätätilanteessa soita 112.",
        "sv": "Tjänsten är överbelastad just nu. Försök igen om en stund. I en nödsituation ring 112.",
        "en": "The service is busy right now. Please try again in a moment. In an emergency, call 112.",
    },
}

assert set(ERROR_TEXTS) == set(ERROR_CODES), "every error code needs its texts"


class NoticeSource(Protocol):
    def notice(self, response_id: str, language: str, **params: Any) -> Any: ...


def error_text(code: str, language: str, content: NoticeSource | None = None) -> str:
    """The error message for ``code`` in ``language`` (fi/sv/en; anything else is fi)."""
    if language not in LANGUAGES:
        language = "fi"
    if content is not None:
        try:
            return content.notice(f"error_{code}", language).text
        except Exception:  # a missing or broken entry must not hide the error itself
            log.debug("no error_%s in the bot's content; using the built-in text", code)
    return ERROR_TEXTS.get(code, ERROR_TEXTS["server_busy"])[language]
