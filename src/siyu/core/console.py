"""The staff console: the admin site and the base class of tenant-scoped admin pages."""

from __future__ import annotations

from unfold.sites import UnfoldAdminSite


class ConsoleSite(UnfoldAdminSite):
    site_url = "/console/"

    def has_permission(self, request) -> bool:
        return bool(request.user.is_active and getattr(request, "actor", None))


def dashboard_callback(request, context):
    return context


def sidebar_navigation(request):
    return []


def environment_badge(request):
    return None
