"""Attach the acting tenant and staff to each console request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


class ActorMiddleware:
    """Sets ``request.actor`` (lazily) from the logged-in user's staff record.

    API requests authenticated by key get their actor from the API's auth instead.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from siyu.tenancy.services import actor_for_user

        request.actor = SimpleLazyObject(
            lambda: actor_for_user(request.user, ip_address=client_ip(request))
        )
        return self.get_response(request)
