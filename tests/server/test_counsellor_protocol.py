"""The console's payload checks (chat_server/counsellor/protocol.py) and the one
error they raise: RequestRefused, whose code is the acknowledgement's and whose
http_status an HTTP route answers with."""

from __future__ import annotations

import pytest

from chat_server.counsellor.protocol import (
    CLOSE_TAGS, COUNSELLOR_MESSAGE_MAX_CHARS, check_callback_id, check_close, check_conversation_id, check_note,
    check_send, check_typing,
)
from chat_server.errors import ChatServerError, RequestRefused


@pytest.mark.parametrize("check, payload, code", [
    (check_conversation_id, None, "malformed_payload"),
    (check_conversation_id, [1], "malformed_payload"),
    (check_conversation_id, {"conversation_id": True}, "malformed_payload"),
    (check_conversation_id, {"conversation_id": 0}, "malformed_payload"),
    (check_callback_id, {"callback_id": "1"}, "malformed_payload"),
    (check_send, {"conversation_id": 1, "text": "  "}, "malformed_payload"),
    (check_send, {"conversation_id": 1, "text": "x" * (COUNSELLOR_MESSAGE_MAX_CHARS + 1)}, "message_too_long"),
    (check_send, {"conversation_id": 1, "text": "hei", "client_id": "a\x00"}, "malformed_payload"),
    (check_send, {"conversation_id": 1, "text": "\ud800"}, "malformed_payload"),
    (check_typing, {"conversation_id": 1, "typing": 1}, "malformed_payload"),
    (check_note, {"conversation_id": 1}, "malformed_payload"),
    (check_close, {"conversation_id": 1, "tags": []}, "tags_required"),
    (check_close, {"conversation_id": 1, "tags": ["no_such_tag"]}, "unknown_tag"),
    (check_close, {"conversation_id": 1, "tags": ["other"], "other_label": "a\u200bb"}, "malformed_payload"),
])
def test_a_refused_payload_names_its_code(check, payload, code):
    with pytest.raises(RequestRefused) as refused:
        check(payload)
    assert refused.value.code == code and refused.value.http_status == 400
    assert isinstance(refused.value, ChatServerError)


def test_checked_payloads():
    assert check_send({"conversation_id": 3, "text": " hei ", "client_id": "c1"}) == \
        check_send({"conversation_id": 3, "text": "hei", "client_id": "c1"})
    assert check_send({"conversation_id": 3, "text": " hei "}).text == "hei"
    assert check_typing({"conversation_id": 3, "typing": False}) == (3, False)
    closing = check_close({"conversation_id": 3, "tags": ["other", "other"], "other_label": "  a   b "})
    assert (closing.tags, closing.other_label) == (("other",), "a b")
    tag = next(t for t in CLOSE_TAGS if t != "other")
    assert check_close({"conversation_id": 3, "tags": [tag], "other_label": "x"}).other_label is None


@pytest.mark.parametrize("code, status", [("not_found", 404), ("forbidden", 403), ("not_yours", 403),
                                          ("already_taken", 409), ("already_done", 409),
                                          ("malformed_payload", 400)])
def test_the_http_status_follows_the_code(code, status):
    assert RequestRefused(code).http_status == status
