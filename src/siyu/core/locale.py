"""Language choice: the console is Chinese unless the user switched; the API negotiates."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.middleware.locale import LocaleMiddleware
from django.utils import translation

API_PREFIX = "/api/"


class SiyuLocaleMiddleware(LocaleMiddleware):
    """Pick the language of a request.

    Why not Django's default negotiation everywhere: staff of a Chinese brand often run
    English operating systems, and the console must open in Chinese (zh-Hans) for them;
    the language switch (a cookie) is the one way to change it. API clients, on the other
    hand, state their language with ``Accept-Language`` and get their errors in it.
    """

    def process_request(self, request: HttpRequest) -> None:
        if request.path.startswith(API_PREFIX):
            super().process_request(request)
            return
        chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
        supported = {code for code, _name in settings.LANGUAGES}
        language = chosen if chosen in supported else settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
