from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WeComConfig(AppConfig):
    name = "siyu.wecom"
    verbose_name = _("WeCom")

    def ready(self) -> None:
        # Register the callback processors (change_contact, change_external_contact, …).
        from siyu.wecom import processors  # noqa: F401
