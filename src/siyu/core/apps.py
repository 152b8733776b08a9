from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.module_loading import autodiscover_modules
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    default = True
    name = "siyu.core"
    verbose_name = _("Platform")

    def ready(self) -> None:
        # Each domain subscribes to events in its handlers.py and defines tasks in tasks.py.
        autodiscover_modules("handlers")
        autodiscover_modules("tasks")


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """Django admin, themed by django-unfold, as the staff console at /console/."""

    default = False
    default_site = "siyu.core.console.ConsoleSite"
