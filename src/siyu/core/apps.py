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
        # New indexes on analysed SQLite tables get statistics (see siyu.core.db).
        from django.db.models.signals import post_migrate

        from siyu.core.db import refresh_statistics_after_migrate

        post_migrate.connect(refresh_statistics_after_migrate, sender=self)


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """Django admin, themed by django-unfold, as the staff console at /console/."""

    default = False
    default_site = "siyu.core.console.ConsoleSite"
