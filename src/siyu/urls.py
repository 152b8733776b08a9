"""URL map: the console, the REST API, language switching and health."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from siyu.analytics.views import dashboard as analytics_dashboard
from siyu.analytics.views import export_csv as analytics_csv
from siyu.api import api
from siyu.core.job_views import download as job_download
from siyu.core.views import health, ping
from siyu.wecom.callbacks import callback as wecom_callback

urlpatterns = [
    path("", RedirectView.as_view(url="/console/", permanent=False)),
    path("healthz", health, name="health"),
    path("ping", ping, name="ping"),
    path("i18n/", include("django.conf.urls.i18n")),
    # Before the console's own URLs: job files are served only through this checked view.
    path("console/jobs/<int:job_id>/download", job_download, name="job-download"),
    path(
        "console/analytics/",
        admin.site.admin_view(analytics_dashboard),
        name="analytics-dashboard",
    ),
    path(
        "console/analytics/<slug:metric>.csv",
        admin.site.admin_view(analytics_csv),
        name="analytics-csv",
    ),
    path("console/", admin.site.urls),
    path("api/v1/", api.urls),
    path("wecom/<slug:tenant_slug>/callback", wecom_callback, name="wecom-callback"),
]
