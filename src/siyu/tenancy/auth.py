"""Console permissions come from the staff member's roles, not Django's per-user tables."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend


class RolePermissionBackend(ModelBackend):
    """Password login as usual; ``user.has_perm`` answered by the staff's roles.

    Departed staff cannot log in (their user is deactivated by ``mark_staff_departed``).
    """

    def _actor(self, user_obj: Any):
        from siyu.tenancy.services import actor_for_user

        if not hasattr(user_obj, "_siyu_actor"):
            user_obj._siyu_actor = actor_for_user(user_obj)
        return user_obj._siyu_actor

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if not user_obj.is_active:
            return False
        if user_obj.is_superuser:
            return True
        actor = self._actor(user_obj)
        return actor is not None and actor.has_perm(perm)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        if not user_obj.is_active:
            return False
        if user_obj.is_superuser:
            return True
        actor = self._actor(user_obj)
        if actor is None:
            return False
        from django.contrib.auth.models import Permission

        codenames = Permission.objects.filter(content_type__app_label=app_label).values_list(
            "codename", flat=True
        )
        return any(actor.has_perm(f"{app_label}.{codename}") for codename in codenames)

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        return set()
