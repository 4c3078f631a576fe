"""The language of each request: ``?lang=``, then ``Accept-Language``, then ``TWIN_LANGUAGE``.

The chosen locale is made current (``geo.i18n``) for the whole request, so pages, problem
details and alert texts rendered while answering it speak it; text answers say which with
``Content-Language`` and ``Vary: Accept-Language`` (caches keep one copy per language).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from geo.i18n import html_lang, negotiate, reset_locale, set_locale

# The query parameter that picks the language: every route takes it, none filters by it.
LANGUAGE_PARAMETER = "lang"
# Answers whose words depend on the language; tiles, images and files do not.
_TEXT_TYPES = (b"text/", b"application/json", b"application/problem+json", b"application/xml",
               b"application/geo+json")


class RequestLanguage:
    """Plain ASGI middleware: picks the request's locale and marks text answers with it."""

    def __init__(self, app, default: str) -> None:
        self.app = app
        self.default = default

    async def __call__(self, scope, receive, send) -> None:
        """Answer the request in its negotiated locale."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        lang = (query.get(LANGUAGE_PARAMETER) or [None])[0]
        accept = None
        for name, value in scope.get("headers", ()):
            if name == b"accept-language":
                accept = value.decode("latin-1")
                break
        locale = negotiate(lang, accept, self.default)
        content_language = html_lang(locale).encode()

        async def send_marked(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if content_type.startswith(_TEXT_TYPES):
                    headers.append((b"content-language", content_language))
                    headers.append((b"vary", b"Accept-Language"))
                    message = {**message, "headers": headers}
            await send(message)

        token = set_locale(locale)
        try:
            await self.app(scope, receive, send_marked)
        finally:
            reset_locale(token)
