"""The chat server's one error family.

Every error the server raises on purpose is a ``ChatServerError`` with a
machine ``code`` and an ``http_status``. Each transport translates the family
once: the resident channel into one ``error`` event, the counsellor channel
into a ``{"ok": false, "error": code}`` acknowledgement, HTTP handlers into a
JSON or page response with ``http_status``. Nothing was changed when one is
raised. Texts for codes live in ``chat_server/i18n/<language>.yml``.
"""

from __future__ import annotations

from typing import Any


class ChatServerError(Exception):
    """Base of every error the chat server raises on purpose.

    ``code`` (a class attribute, or given per instance) names the error for
    machines and for translations; ``http_status`` is what an HTTP handler
    answers with. ``detail`` is for logs and never holds a resident's text.
    """

    code = "internal_error"
    http_status = 500

    def __init__(self, detail: str = "", *, code: str | None = None, http_status: int | None = None) -> None:
        super().__init__(detail or code or self.code)
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        """The body of an HTTP answer to this error (``chat_server/errors_http.py``)."""
        return {"error": self.code}


class StartupError(ChatServerError):
    """The server cannot start; the message says why. Raised before serving."""


class ConfigurationError(StartupError):
    """A setting cannot be used; the message says what to fix."""


# --- Errors the resident is told about (the `error` event) ------------------------


class ResidentError(ChatServerError):
    """Input refused; ``code`` is the protocol's error code."""

    code = "server_busy"
    http_status = 400

    def __init__(self, detail: str = "", *, client_id: str | None = None) -> None:
        super().__init__(detail)  # detail: for logs only, never contains message text
        self.client_id = client_id


class MessageTooLong(ResidentError):
    code = "message_too_long"


class RateLimited(ResidentError):
    code = "rate_limited"
    http_status = 429


class UnknownSession(ResidentError):
    code = "unknown_session"


class MalformedPayload(ResidentError):
    code = "malformed_payload"


class UnknownEvent(ResidentError):
    code = "unknown_event"


class TooManyConnections(ResidentError):
    """The address already holds POLKU_SOCKETS_PER_ADDRESS resident sockets (refused at connect)."""

    code = "too_many_connections"


class QueueLimited(ResidentError):
    """The address already has POLKU_QUEUED_PER_ADDRESS conversations waiting for a counsellor
    (never raised for a crisis: a crisis is always queued)."""

    code = "queue_limited"


class CallbackInvalid(ResidentError):
    """A callback request without consent, or with a phone number or field that cannot be used."""

    code = "callback_invalid"


class ServerBusy(ResidentError):
    """A backend (database, Redis) failed; the resident may try again."""

    code = "server_busy"
    http_status = 503


class BackendUnavailable(ServerBusy):
    """The database or Redis did not answer. ``backend`` names which."""

    def __init__(self, backend: str, cause: BaseException | None = None) -> None:
        super().__init__(f"{backend} unavailable: {type(cause).__name__ if cause else 'unknown'}")
        self.backend = backend


ERROR_CODES: tuple[str, ...] = (
    MessageTooLong.code, RateLimited.code, UnknownSession.code,
    MalformedPayload.code, UnknownEvent.code, ServerBusy.code, CallbackInvalid.code,
    TooManyConnections.code, QueueLimited.code,
)


# --- Errors of the handoff state machine -------------------------------------------


class IllegalTransition(ChatServerError):
    """A handoff move the state machine does not allow (or not for this actor)."""

    code = "illegal_transition"
    http_status = 409

    def __init__(self, from_state: str, to_state: str, actor: str) -> None:
        super().__init__(f"handoff {from_state} -> {to_state} is not allowed for {actor}")
        self.from_state = from_state
        self.to_state = to_state
        self.actor = actor


# --- Errors of staff sign-in (chat_server/staff/) ------------------------------------


class AuthError(ChatServerError):
    """A staff action refused; ``code`` names why (the sign-in pages show a text for it)."""

    code = "auth_error"
    http_status = 401


class SignInFailed(AuthError):
    """Unknown user, wrong password or disabled account: the same answer for all three."""

    code = "wrong_credentials"


class SecondFactorFailed(AuthError):
    code = "wrong_code"


class SignInThrottled(AuthError):
    """Too early after failed attempts (or too many from one address): wait ``wait_secs``."""

    code = "too_many_attempts"
    http_status = 429

    def __init__(self, detail: str = "", *, wait_secs: float = 1.0) -> None:
        super().__init__(detail)
        self.wait_secs = wait_secs


class InvalidStaffInput(AuthError):
    """A username, display name, role or password that cannot be used (CLI and admin pages)."""

    code = "invalid_input"
    http_status = 400


class SsoError(ChatServerError):
    """A single sign-on that did not succeed; ``code`` is what the sign-in page says."""

    code = "sso_failed"
    http_status = 401


class SsoNoRole(SsoError):
    """The provider signed the user in, but no value of the role claim is one of Polku's."""

    code = "sso_no_role"
    http_status = 403


# --- Errors of the admin pages (JSON: {"error": code, "detail": ...}) ------------------


class AdminError(ChatServerError):
    """An admin request refused; ``to_json()`` is the response body."""

    code = "bad_request"
    http_status = 400

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail}


class EditRefused(AdminError):
    """The edit is not allowed; ``problems`` (each with ``to_json()``) say why and where."""

    code = "invalid"
    http_status = 422

    def __init__(self, problems: list[Any]) -> None:
        super().__init__("; ".join(p.code for p in problems))
        self.problems = problems

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "detail": "the change was not made",
                "problems": [p.to_json() for p in self.problems]}


class EditConflict(AdminError):
    """The slot no longer holds what the edit (or undo) expects: changed meanwhile.
    ``message`` is what the admin is told, per language."""

    code = "conflict"
    http_status = 409

    def __init__(self, detail: str, message: dict[str, str]) -> None:
        super().__init__(detail)
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "message": self.message}


class UndoRefused(AdminError):
    """The change cannot be undone (already undone, or changed again since)."""

    code = "conflict"
    http_status = 409


class TrainingBusy(AdminError):
    """A training run is already going."""

    code = "busy"
    http_status = 409


class ActivationError(AdminError):
    """The model could not be activated; Rasa keeps the model it had."""

    code = "activation_failed"
    http_status = 502


class ActivationBusy(ActivationError):
    code = "busy"
    http_status = 409


class ModelNotFound(ActivationError):
    code = "not_found"
    http_status = 404


class ConversationActive(AdminError):
    """The conversation is queued or with a counsellor: close it first."""

    code = "conversation_active"
    http_status = 409


class InboxError(AdminError):
    """An inbox request that cannot be used (ids, texts)."""


class NotFound(AdminError):
    """What the request names does not exist (deleted, or never did)."""

    code = "not_found"
    http_status = 404


class RetentionBusy(AdminError):
    """Another server process is deleting old conversations right now."""

    code = "busy"
    http_status = 409


class KeepRefused(AdminError):
    """Keeping an example needs a reason."""

    code = "invalid_input"


# --- Errors of staff requests (the console's acknowledgement, staff HTTP routes) -------


class RequestRefused(ChatServerError):
    """A staff request refused (the console, call-backs); nothing was changed.

    ``code`` goes back in the console's acknowledgement ``{"ok": false, "error": code}``
    and in an HTTP route's JSON; ``http_status`` follows from the code."""

    code = "malformed_payload"
    http_status = 400
    HTTP_STATUS_OF_CODE = {"not_found": 404, "forbidden": 403, "not_yours": 403,
                           "already_taken": 409, "already_done": 409, "not_allowed": 409}

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail, code=code, http_status=self.HTTP_STATUS_OF_CODE.get(code, 400))
