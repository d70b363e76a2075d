"""The error family over HTTP, translated once: ``error_middleware``.

Any ``ChatServerError`` (``chat_server/errors.py``) an HTTP handler raises
becomes its ``http_status`` with the JSON body ``exc.to_json()``
(``{"error": code}``, and whatever a subclass adds), with the staff pages'
headers (no caching). A handler that answers an error with a page (the
sign-in form shown again with its message) catches the error itself.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from .errors import ChatServerError
from .staff.csrf import staff_page_headers
from .staff.web import Handler

log = logging.getLogger(__name__)


def error_response(exc: ChatServerError) -> web.Response:
    """The HTTP answer to an error of the family."""
    body = json.dumps(exc.to_json(), ensure_ascii=False, default=str)
    return staff_page_headers(web.json_response(status=exc.http_status, text=body))


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ChatServerError as exc:
        log.info("%s %s: %s (%s)", request.method, request.path, exc.code, exc.http_status)
        return error_response(exc)
