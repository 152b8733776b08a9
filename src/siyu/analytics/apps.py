from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnalyticsConfig(AppConfig):
    name = "siyu.analytics"
    verbose_name = _("Analytics")

    def ready(self) -> None:
        # The prediction fields of the segment rules (siyu.segments.fields.register_field).
        from siyu.analytics import segment_fields  # noqa: F401
