"""URL map: the console, the REST API, language switching and health."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from siyu.api import api
from siyu.core.views import health, ping
from siyu.wecom.callbacks import callback as wecom_callback

urlpatterns = [
    path("", RedirectView.as_view(url="/console/", permanent=False)),
    path("healthz", health, name="health"),
    path("ping", ping, name="ping"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("console/", admin.site.urls),
    path("api/v1/", api.urls),
    path("wecom/<slug:tenant_slug>/callback", wecom_callback, name="wecom-callback"),
]
