"""Plain views of the platform itself."""

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def health(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and ``siyu demo``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "database": connection.vendor})


@csrf_exempt
def ping(request: HttpRequest) -> HttpResponse:
    """A bare ``success`` with no database access: the baseline of ``benchmarks/``.

    It runs through the same middleware as the WeCom callback endpoint and answers the same
    body, so a benchmark can set what the callback's own work costs against the server's.
    """
    return HttpResponse(b"success", content_type="text/plain; charset=utf-8")
