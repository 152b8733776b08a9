"""The customer 360 (客户画像): everything about one customer on one page and in one API call.

``build_360`` gathers identity, profile, custom fields, friendships, tags, groups, the
lifecycle stage, notes and follow-ups, open tasks and the first page of the timeline with a
fixed number of queries whatever the customer's history (select_related / prefetch; the test
suite holds it to a budget). The console page (``CustomerAdmin.change_view``) and the API's
360 endpoint both render it. The forms on the page call ``siyu.customers.profiles``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django import forms
from django.db.models import Prefetch
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanWidget,
)

from siyu.core.errors import NotFound
from siyu.customers import lifecycle, profiles, timeline
from siyu.customers.models import (
    AgeBand,
    Customer,
    CustomerNote,
    CustomerTag,
    CustomField,
    Follow,
    FollowTag,
    LifecyclePolicy,
)

if TYPE_CHECKING:
    from siyu.tenancy.actor import Actor

NOTES_SHOWN = 20
TASKS_SHOWN = 20


def load_customer(actor: Actor, customer_id: Any) -> Customer:
    """A customer within the actor's tenant and data scope (404 otherwise, never 403)."""
    try:
        pk = int(customer_id)
    except (TypeError, ValueError):
        pk = 0
    customer = (
        Customer.objects.for_actor(actor)
        .select_related("owner", "merged_into")
        .filter(pk=pk)
        .first()
        if pk > 0
        else None
    )
    if customer is None:
        raise NotFound(_("Customer not found"), details={"id": customer_id})
    return customer


@dataclass
class CustomValue:
    field: CustomField
    value: Any

    @property
    def shown(self) -> str:
        if self.value is None:
            return ""
        if isinstance(self.value, list):
            return "、".join(str(item) for item in self.value)
        return str(self.value)


@dataclass
class GroupMembership:
    group_id: int
    name: str
    joined_at: datetime | None
    member_count: int


@dataclass
class Customer360:
    customer: Customer
    display_name: str
    phone: str  # masked unless the actor may see phones
    phone_masked: bool
    stage: str
    stage_label: str
    policy: LifecyclePolicy
    custom_values: list[CustomValue]
    follows: list[Follow]
    tags: list[Any]  # Tag rows, deduplicated, with their group
    groups: list[GroupMembership]
    notes: list[CustomerNote]
    tasks: list[Any]  # open StaffTask rows
    timeline: timeline.TimelinePage
    merged_ids: list[int] = field(default_factory=list)

    @property
    def source_channel(self) -> str:
        return self.customer.source_state


def _follows(customer: Customer) -> list[Follow]:
    links = FollowTag.objects.for_tenant(customer.tenant_id).select_related("tag")
    return list(
        Follow.objects.for_tenant(customer.tenant_id)
        .filter(customer_id=customer.pk)
        .select_related("staff")
        .prefetch_related(Prefetch("follow_tags", queryset=links))
        .order_by("added_at", "id")
    )


def _tags(customer: Customer, follows: list[Follow]) -> list[Any]:
    """The customer-level tags (CustomerTag), plus any marked on an active friendship."""
    found = {}
    for link in (
        CustomerTag.objects.for_tenant(customer.tenant_id)
        .filter(customer_id=customer.pk, tag__deleted=False)
        .select_related("tag__group")
        .order_by("tag__group__order", "tag__order", "tag_id")
    ):
        found[link.tag_id] = link.tag
    for follow in follows:
        if follow.is_active:
            for link in follow.follow_tags.all():
                if not link.tag.deleted:
                    found.setdefault(link.tag_id, link.tag)
    return list(found.values())


def _groups(customer: Customer, ids: list[int]) -> list[GroupMembership]:
    from siyu.community.models import Group, GroupMember

    memberships = (
        GroupMember.objects.for_tenant(customer.tenant_id)
        .filter(
            customer_id__in=ids,
            status=GroupMember.Status.ACTIVE,
            group__status=Group.Status.ACTIVE,
        )
        .select_related("group")
        .order_by("-join_time", "-id")
    )
    seen: dict[int, GroupMembership] = {}
    for member in memberships:
        seen.setdefault(
            member.group_id,
            GroupMembership(
                member.group_id,
                str(member.group),
                member.join_time,
                member.group.member_count,
            ),
        )
    return list(seen.values())


def open_tasks(customer: Customer, ids: list[int]) -> list[Any]:
    from siyu.engagement.models import StaffTask

    return list(
        StaffTask.objects.for_tenant(customer.tenant_id)
        .filter(customer_id__in=ids, status=StaffTask.Status.OPEN)
        .select_related("staff")
        .order_by("due_at", "id")[:TASKS_SHOWN]
    )


def build_360(
    actor: Actor,
    customer: Customer,
    *,
    timeline_limit: int = timeline.PAGE_SIZE,
    timeline_cursor: str | None = None,
) -> Customer360:
    """Everything the 360 page and API show about a customer the actor may see."""
    ids = timeline.timeline_customer_ids(customer)
    policy = lifecycle.policy_for(customer.tenant_id)
    fields = profiles.custom_fields(customer.tenant_id)
    follows = _follows(customer)
    notes = list(profiles.visible_notes(actor, customer).filter(customer_id__in=ids)[:NOTES_SHOWN])
    masked = not profiles.may_see_phone(actor)
    return Customer360(
        customer=customer,
        display_name=profiles.display_name(customer),
        phone=profiles.shown_phone(actor, customer),
        phone_masked=masked,
        stage=customer.lifecycle_stage,
        stage_label=customer.get_lifecycle_stage_display(),
        policy=policy,
        custom_values=[CustomValue(f, v) for f, v in profiles.custom_values(customer, fields)],
        follows=follows,
        tags=_tags(customer, follows),
        groups=_groups(customer, ids),
        notes=notes,
        tasks=open_tasks(customer, ids),
        timeline=timeline.timeline(
            customer, limit=timeline_limit, cursor=timeline_cursor, customer_ids=ids
        ),
        merged_ids=ids[1:],
    )


# --- the console's forms ----------------------------------------------------------------------
class DateInput(UnfoldAdminTextInputWidget):
    input_type = "date"


class DateTimeInput(UnfoldAdminTextInputWidget):
    input_type = "datetime-local"

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, datetime):
            return _local_input(value)
        return super().format_value(value)


TEXT = UnfoldAdminTextInputWidget


class ProfileForm(forms.Form):
    """Profile attributes; ``phone`` only appears for staff who may see phones in full."""

    display_name = forms.CharField(
        label=gettext_lazy("display name"),
        required=False,
        max_length=profiles.DISPLAY_NAME_MAX,
        widget=TEXT,
        help_text=gettext_lazy("The brand's name for the customer; WeCom's name stays as is"),
    )
    birthday = forms.DateField(label=gettext_lazy("birthday"), required=False, widget=DateInput)
    age_band = forms.ChoiceField(
        label=gettext_lazy("age band"),
        required=False,
        choices=[("", "—"), *AgeBand.choices],
        widget=UnfoldAdminSelectWidget,
    )
    province = forms.CharField(
        label=gettext_lazy("province"), required=False, max_length=profiles.PLACE_MAX, widget=TEXT
    )
    city = forms.CharField(
        label=gettext_lazy("city"), required=False, max_length=profiles.PLACE_MAX, widget=TEXT
    )
    interests = forms.CharField(
        label=gettext_lazy("interests"),
        required=False,
        widget=TEXT,
        help_text=gettext_lazy("Separated by commas"),
    )
    phone = forms.CharField(label=gettext_lazy("phone"), required=False, max_length=40, widget=TEXT)
    phone_verified = forms.BooleanField(
        label=gettext_lazy("phone verified"), required=False, widget=UnfoldBooleanWidget
    )

    def __init__(self, *args: Any, may_see_phone: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not may_see_phone:
            # Editing a number one cannot read would mean typing over the unknown.
            del self.fields["phone"]
            del self.fields["phone_verified"]

    @classmethod
    def initial_for(cls, customer: Customer) -> dict[str, Any]:
        return {
            "display_name": (customer.custom or {}).get(profiles.DISPLAY_NAME_KEY, ""),
            "birthday": customer.birthday,
            "age_band": customer.age_band,
            "province": customer.province,
            "city": customer.city,
            "interests": ", ".join(customer.interests or []),
            "phone": customer.phone,
            "phone_verified": customer.phone_verified,
        }

    def service_values(self) -> dict[str, Any]:
        values = dict(self.cleaned_data)
        if "birthday" in values:
            values["birthday"] = values["birthday"] or None
        return values


def custom_fields_form(fields: list[CustomField], data: Any = None, initial: Any = None):
    """A form with one input per active custom field, fitted to its type."""
    form = forms.Form(data=data, initial=initial, prefix="custom")
    for definition in fields:
        common = {"label": definition.label, "required": False, "help_text": definition.help_text}
        kind = definition.type
        if kind == CustomField.Type.NUMBER:
            form.fields[definition.key] = forms.CharField(
                widget=TEXT(attrs={"inputmode": "decimal"}), **common
            )
        elif kind == CustomField.Type.DATE:
            form.fields[definition.key] = forms.CharField(widget=DateInput, **common)
        elif kind == CustomField.Type.CHOICE:
            choices = [("", "—"), *((c, c) for c in definition.choices)]
            form.fields[definition.key] = forms.ChoiceField(
                choices=choices, widget=UnfoldAdminSelectWidget, **common
            )
        elif kind == CustomField.Type.MULTI_CHOICE:
            form.fields[definition.key] = forms.MultipleChoiceField(
                choices=[(c, c) for c in definition.choices],
                widget=UnfoldAdminCheckboxSelectMultipleWidget,
                **common,
            )
        else:
            form.fields[definition.key] = forms.CharField(
                max_length=profiles.TEXT_VALUE_MAX, widget=TEXT, **common
            )
    return form


def _local_input(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%dT%H:%M") if value else ""


DATETIME_INPUTS = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"]


class NoteForm(forms.Form):
    kind = forms.ChoiceField(
        label=gettext_lazy("kind"),
        choices=CustomerNote.Kind.choices,
        widget=UnfoldAdminSelectWidget,
    )
    content = forms.CharField(
        label=gettext_lazy("content"),
        max_length=profiles.NOTE_MAX,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
    )
    happened_at = forms.DateTimeField(
        label=gettext_lazy("happened at"),
        required=False,
        widget=DateTimeInput,
        input_formats=DATETIME_INPUTS,
        help_text=gettext_lazy("Empty: now"),
    )
    next_contact_at = forms.DateTimeField(
        label=gettext_lazy("next contact"),
        required=False,
        help_text=gettext_lazy("A follow-up task is created for this time"),
        widget=DateTimeInput,
        input_formats=DATETIME_INPUTS,
    )

    @classmethod
    def initial_for(cls, note: CustomerNote) -> dict[str, Any]:
        return {
            "kind": note.kind,
            "content": note.content,
            "happened_at": _local_input(note.happened_at),
            "next_contact_at": _local_input(note.next_contact_at),
        }
