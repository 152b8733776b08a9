from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CommerceConfig(AppConfig):
    name = "siyu.commerce"
    verbose_name = _("Commerce")

    def ready(self) -> None:
        # The order lines of the customer timeline (siyu.customers.timeline.describes).
        from siyu.commerce import segment_fields, timeline  # noqa: F401

        # and the order fields of the segment rules (siyu.segments.fields.register_field).
