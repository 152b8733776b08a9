"""The staff console: the admin site, the base classes of its pages, the sidebar and the dashboard.

Why base classes: Django admin reads through ``Model._default_manager`` in many places
(changelists, object look-ups, form choices, list filters, autocomplete), and the default
manager of tenant data refuses to run until it is narrowed to a tenant. ``TenantScopedAdmin``
narrows every one of those to ``request.actor`` (its tenant and its role's data scope), answers
404 for rows outside that scope so that their existence is not leaked, and sends every write
through a domain service (``save_via_service``), never ``obj.save()``. A service's refusal
(``ServiceError``) comes back as an error on the form or as an admin message, never a 500.

Each domain's ``admin.py`` registers its pages with the site and puts them in the sidebar
with ``add_model_page`` / ``add_page``; the sidebar groups them by business domain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.admin import RelatedFieldListFilter
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured, PermissionDenied
from django.db.models import Exists, OuterRef
from django.dispatch import receiver
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import RangeDateFilter
from unfold.sites import UnfoldAdminSite
from unfold.views import ChangeList as UnfoldChangeList

from siyu.core.errors import ServiceError
from siyu.core.scoping import TenantScopedModel

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet

    from siyu.tenancy.actor import Actor


class ConsoleSite(UnfoldAdminSite):
    """The console at /console/: only active staff of an active tenant get in."""

    site_url = "/console/"
    index_title = _("Dashboard")

    def has_permission(self, request) -> bool:
        return bool(request.user.is_active and getattr(request, "actor", None))


def console_actor(request: HttpRequest) -> Actor:
    """The actor of a console request; the site only lets requests with one in."""
    actor = getattr(request, "actor", None)
    if not actor:
        raise PermissionDenied
    return actor


# --- the sidebar ------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    key: str
    title: Any  # a lazy translation


# The business domains, in the order operators work through them. A section appears once a
# page in it exists and the staff may open it.
SECTIONS: tuple[Section, ...] = (
    Section("customers", _("Customers")),
    Section("acquisition", _("Acquisition")),
    Section("engagement", _("Engagement")),
    Section("community", _("Community")),
    Section("commerce", _("Commerce")),
    Section("campaigns", _("Campaigns")),
    Section("loyalty", _("Membership")),
    Section("distribution", _("Distribution")),
    Section("data", _("Data")),
    Section("settings", _("Settings")),
)
_SECTION_KEYS = {section.key for section in SECTIONS}


@dataclass(frozen=True)
class Page:
    """One sidebar entry: a title, an icon, where it links and who may see it."""

    section: str
    title: Any
    icon: str
    link: Callable[[HttpRequest], str]
    allowed: Callable[[HttpRequest], bool]


_pages: list[Page] = []


def add_page(
    section: str,
    *,
    title: Any,
    icon: str,
    link: Callable[[HttpRequest], str],
    allowed: Callable[[HttpRequest], bool],
) -> None:
    """Put a page in a sidebar section (a domain's admin.py calls this at import)."""
    if section not in _SECTION_KEYS:
        raise ImproperlyConfigured(f"Unknown console section {section!r}")
    if any(page.section == section and page.title == title for page in _pages):
        return  # a module imported twice (autoreload) must not duplicate its entries
    _pages.append(Page(section, title, icon, link, allowed))


def add_model_page(
    section: str,
    model: type[Model],
    *,
    icon: str,
    title: Any = None,
    link: Callable[[HttpRequest], str] | None = None,
) -> None:
    """Put a model's changelist in a section, shown to staff who may view or change it."""
    opts = model._meta

    def allowed(request: HttpRequest) -> bool:
        return request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or (
            request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
        )

    add_page(
        section,
        title=title or opts.verbose_name_plural,
        icon=icon,
        link=link
        or (lambda request: reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")),
        allowed=allowed,
    )


add_page(
    "data",
    title=_("Dashboard"),
    icon="dashboard",
    link=lambda request: reverse("admin:index"),
    allowed=lambda request: True,
)


def sidebar_navigation(request: HttpRequest) -> list[dict[str, Any]]:
    """Unfold's navigation groups: one per domain section with pages the staff may open."""
    groups = []
    for section in SECTIONS:
        items = [
            {"title": capfirst(page.title), "icon": page.icon, "link": page.link(request)}
            for page in _pages
            if page.section == section.key and page.allowed(request)
        ]
        if items:
            groups.append({"title": section.title, "separator": True, "items": items})
    return groups


def environment_badge(request: HttpRequest) -> list[str] | None:
    """The tenant's name in the header, so a platform operator sees which brand they are in."""
    actor = getattr(request, "actor", None)
    if not actor:
        return None
    return [actor.tenant.name, "info"]


# --- the dashboard ------------------------------------------------------------------------
def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    """Live counts and the events chart for the actor's tenant and data scope."""
    from siyu.core.dashboard import build_dashboard

    actor = getattr(request, "actor", None)
    context["title"] = _("Dashboard")
    if actor:
        context["dashboard"] = build_dashboard(actor, link=_admin_link)
    return context


def _admin_link(url_name: str, query: str = "") -> str | None:
    try:
        return reverse(f"admin:{url_name}") + (f"?{query}" if query else "")
    except NoReverseMatch:
        return None


# --- console logins in the audit log -------------------------------------------------------
@receiver(user_logged_in, dispatch_uid="siyu.console.audit_login")
def audit_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Who signed in to the console, and from where (bookkeeping, not business logic)."""
    _audit_session(request, user, "user.logged_in")


@receiver(user_logged_out, dispatch_uid="siyu.console.audit_logout")
def audit_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    _audit_session(request, user, "user.logged_out")


def _audit_session(request: HttpRequest | None, user: Any, action: str) -> None:
    from siyu.core.audit import record_audit
    from siyu.tenancy.middleware import client_ip
    from siyu.tenancy.services import actor_for_user

    if user is None:
        return
    actor = actor_for_user(user, ip_address=client_ip(request) if request is not None else None)
    if actor is not None:
        record_audit(actor, action, actor.staff)


# --- forms and errors from services --------------------------------------------------------
class ServiceRejected(Exception):
    """A service refused the change a console form asked for; carries its error."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(error.message)
        self.error = error


class ServiceModelForm(forms.ModelForm):
    """Base form of console pages: the service, not the form, validates uniqueness.

    Django's unique checks query ``_default_manager`` without the tenant (they would refuse
    to run, or compare across tenants); the services check uniqueness within the tenant.
    """

    def validate_unique(self) -> None:
        return None


class _ServiceErrorFormMixin:
    """Shows a service's refusal on the re-rendered form, on its field when it names one."""

    service_error: ServiceError

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        error = self.service_error
        field = None
        if isinstance(error.details, dict) and len(error.details) == 1:
            (name,) = error.details
            field = name if name in self.fields else None
        self.add_error(field, error.message)
        return cleaned


_SERVICE_ERROR_ATTRIBUTE = "_siyu_service_error"


class ConsoleChangeList(UnfoldChangeList):
    """Unfold's change list, remembering the query strings it has built.

    Unfold's table builds every column header again for each cell (its mobile layout labels
    cells with them), and each header builds its sort links: some 1 500 query strings for a
    page of 50 customers, a tenth of the page's time. The filters and sort of one page do not
    change while it renders, so each distinct link is built once.
    """

    def get_query_string(self, new_params: dict | None = None, remove: list | None = None) -> str:
        key = (repr(sorted((new_params or {}).items())), tuple(remove or ()))
        built = self.__dict__.setdefault("_built_query_strings", {})
        if key not in built:
            built[key] = super().get_query_string(new_params, remove)
        return built[key]


class ServiceAdmin(ModelAdmin):
    """An unfold admin page whose writes all go through domain services.

    Subclasses implement ``save_via_service`` (and bulk actions call ``apply_service``).
    Deleting is refused unless a subclass allows it and overrides ``delete_model`` and
    ``delete_queryset`` with a service. Objects the staff may not see are a 404.
    """

    form = ServiceModelForm
    save_as = False
    list_per_page = 50
    warn_unsaved_form = True

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[UnfoldChangeList]:
        return ConsoleChangeList

    # -- looking objects up -------------------------------------------------------------
    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None):
        """The object if the staff may see it, else 404 (never the admin's redirect).

        A staff without any right on the model gets 403 before the look-up, so the
        answer does not depend on whether the id exists.
        """
        if not (self.has_view_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(_("Not found"))
        return obj

    def fresh_copy(self, request: HttpRequest, obj: Model) -> Model:
        """The stored row behind a form's instance, which the form has already modified.

        Services compare the old and new values (for the audit log), so they need the row
        as stored, not the instance the form filled in.
        """
        return self.get_queryset(request).get(pk=obj.pk)

    # -- writing through services ---------------------------------------------------------
    def save_via_service(
        self, request: HttpRequest, obj: Model, form: forms.ModelForm, change: bool
    ) -> Model:
        """Create or change the object with a service call and return the stored row."""
        raise ImproperlyConfigured(
            f"{type(self).__name__} must save through a service (save_via_service)"
        )

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        try:
            stored = self.save_via_service(request, obj, form, change)
        except ServiceError as error:
            raise ServiceRejected(error) from error
        # The admin's responses read the form's instance: point it at the stored row.
        obj.__dict__.update(stored.__dict__)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Related rows (e.g. a staff's roles) are written by the service, not the form."""

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        raise ImproperlyConfigured("Console inlines must save through a service")

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Run the form; if the service refuses, render the form again with its message.

        The refused attempt's transaction is rolled back (the admin wraps the view in one),
        then the form is validated again with the service's error added.
        """
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRejected as rejected:
            setattr(request, _SERVICE_ERROR_ATTRIBUTE, rejected.error)
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(
        self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs
    ):
        form = super().get_form(request, obj, change, **kwargs)
        error = getattr(request, _SERVICE_ERROR_ATTRIBUTE, None)
        if error is None:
            return form
        return type(form.__name__, (_ServiceErrorFormMixin, form), {"service_error": error})

    def apply_service(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        service: Callable[[Any], Any],
        done: Callable[[int], str],
    ) -> int:
        """Run a service on each selected row; report refusals one by one, then the count."""
        succeeded = 0
        for obj in queryset:
            try:
                service(obj)
            except ServiceError as error:
                self.message_user(request, f"{obj}: {error.message}", messages.ERROR)
            else:
                succeeded += 1
        if succeeded:
            self.message_user(request, done(succeeded), messages.SUCCESS)
        return succeeded

    # -- deleting -------------------------------------------------------------------------
    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        raise ImproperlyConfigured("Console pages delete through a service")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        raise ImproperlyConfigured("Console pages delete through a service")

    # -- history ----------------------------------------------------------------------------
    # The services write the audit log in the same transaction as the change; the admin's
    # own LogEntry would be a second, tenant-blind history.
    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> None:
        return None

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> None:
        return None

    def log_deletions(self, request: HttpRequest, queryset: QuerySet) -> None:
        return None


# --- tenant scoping ----------------------------------------------------------------------
def scoped_choices(model: type[Model], request: HttpRequest) -> QuerySet:
    """The rows of ``model`` a console form or filter may offer to this request's actor."""
    from siyu.tenancy.models import Tenant

    actor = console_actor(request)
    if issubclass(model, TenantScopedModel):
        return model._default_manager.for_actor(actor)
    if model is Tenant:
        return Tenant.objects.filter(pk=actor.tenant_id)
    if model is get_user_model():
        return model._default_manager.filter(staff__tenant_id=actor.tenant_id)
    raise ImproperlyConfigured(
        f"The console cannot offer {model.__name__} rows: say which belong to a tenant"
    )


class TenantRelatedFieldListFilter(RelatedFieldListFilter):
    """A related-object filter offering only the objects the visible rows refer to.

    Derived from the page's own (scoped) queryset, so it can never list another tenant's
    staff, departments or users, whatever the related model.
    """

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list:
        # EXISTS per candidate (an index look-up each), not IN (every visible row): the
        # owners of a million customers are listed in milliseconds, not a scan of them all.
        target = field.target_field.name
        visible = model_admin.get_queryset(request).order_by()
        refers = visible.filter(**{self.field_path: OuterRef(target)})
        rows = field.related_model._base_manager.filter(Exists(refers))
        ordering = self.field_admin_ordering(field, request, model_admin) or ()
        if ordering:
            rows = rows.order_by(*ordering)
        return [(getattr(row, target), str(row)) for row in rows]


class DayRangeFilter(RangeDateFilter):
    """Between two days, both included, in the site's time zone; either end may be left open.

    Console lists over big tables use it instead of Django's date hierarchy, which reads every
    visible row's date to draw its year links: seconds on a million customers or ten million
    events, on every list page. A day that is not a date filters nothing (and is no error).
    """

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        name = self.parameter_name
        start = _day(self.used_parameters.get(f"{name}_from"))
        end = _day(self.used_parameters.get(f"{name}_to"))
        if start is not None:
            queryset = queryset.filter(**{f"{name}__gte": _midnight(start)})
        if end is not None:
            queryset = queryset.filter(**{f"{name}__lt": _midnight(end + timedelta(days=1))})
        return queryset


def _day(value: Any) -> date | None:
    try:
        return parse_date(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class TenantScopedAdmin(ServiceAdmin):
    """Base of every console page over tenant data.

    Rows, form choices and list filters are narrowed to ``request.actor``; the ``tenant``
    column is never shown or edited (the service takes the actor's tenant).
    """

    hidden_fields: tuple[str, ...] = ("tenant",)

    def __init__(self, model: type[Model], admin_site: Any) -> None:
        if self.raw_id_fields:
            # The raw-id widget looks rows up through the unscoped default manager.
            raise ImproperlyConfigured("Console pages use select or autocomplete widgets")
        super().__init__(model, admin_site)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = self.model._default_manager.for_actor(console_actor(request))
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def tenant(self, request: HttpRequest) -> Any:
        return console_actor(request).tenant

    # -- forms ------------------------------------------------------------------------------
    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if "queryset" not in kwargs:
            kwargs["queryset"] = self._ordered_choices(db_field, request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if "queryset" not in kwargs:
            kwargs["queryset"] = self._ordered_choices(db_field, request)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def _ordered_choices(self, db_field: Any, request: HttpRequest) -> QuerySet:
        queryset = scoped_choices(db_field.remote_field.model, request)
        related_admin = self.admin_site._registry.get(db_field.remote_field.model)
        ordering = related_admin.get_ordering(request) if related_admin else ()
        return queryset.order_by(*ordering) if ordering else queryset

    def get_exclude(self, request: HttpRequest, obj: Model | None = None):
        return [*(super().get_exclude(request, obj) or ()), *self.hidden_fields]

    def get_fields(self, request: HttpRequest, obj: Model | None = None):
        return [f for f in super().get_fields(request, obj) if f not in self.hidden_fields]

    # -- changelists ------------------------------------------------------------------------
    def get_list_display(self, request: HttpRequest):
        return [f for f in super().get_list_display(request) if not self._is_hidden(f)]

    def get_list_filter(self, request: HttpRequest):
        return [
            self._scoped_filter(f)
            for f in super().get_list_filter(request)
            if not self._is_hidden(f)
        ]

    def _is_hidden(self, entry: Any) -> bool:
        name = entry[0] if isinstance(entry, (tuple, list)) else entry
        return isinstance(name, str) and name.split("__")[0] in self.hidden_fields

    def _scoped_filter(self, entry: Any) -> Any:
        """Related fields named by path filter through ``TenantRelatedFieldListFilter``."""
        if not isinstance(entry, str):
            return entry
        try:
            field = get_fields_from_path(self.model, entry)[-1]
        except FieldDoesNotExist:
            return entry
        return (entry, TenantRelatedFieldListFilter) if field.is_relation else entry


class ReadOnlyAdminMixin:
    """For append-only logs: look, never touch."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class TenantScopedInline(TabularInline):
    """Base of inlines over tenant data (rows shown on a parent object's page).

    Django reads inline rows through the unscoped default manager, which refuses to run:
    these read the parent's tenant instead (the parent page already checked that the staff
    may see the parent, and its related rows are part of it). Read-only unless a subclass
    allows more and saves through a service; the ``tenant`` column is never shown.
    """

    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = self.model._default_manager.for_tenant(console_actor(request).tenant_id)
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def get_exclude(self, request: HttpRequest, obj: Model | None = None):
        return [*(super().get_exclude(request, obj) or ()), "tenant"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        kwargs.setdefault("queryset", scoped_choices(db_field.remote_field.model, request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
