"""The analytics page's place in the console sidebar (the page itself: ``views.py``)."""

from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from siyu.analytics.views import PERMISSION
from siyu.core.console import add_page

add_page(
    "data",
    title=_("Analytics"),
    icon="monitoring",
    link=lambda request: reverse("analytics-dashboard"),
    allowed=lambda request: request.user.has_perm(PERMISSION),
)
