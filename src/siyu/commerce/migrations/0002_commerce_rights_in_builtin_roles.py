"""Existing tenants' built-in roles get the commerce rights new tenants start with."""

from django.db import migrations

ADDED = {
    "operator": ["commerce.*"],
    "sales": [
        "commerce.view_order",
        "commerce.view_orderline",
        "commerce.view_refund",
        "commerce.view_product",
    ],
    "service": [
        "commerce.view_order",
        "commerce.view_orderline",
        "commerce.view_refund",
        "commerce.view_product",
    ],
}


def grant(apps, schema_editor):
    Role = apps.get_model("tenancy", "Role")
    for role in Role.objects.filter(is_builtin=True, code__in=list(ADDED)):
        permissions = list(role.permissions or [])
        missing = [entry for entry in ADDED[role.code] if entry not in permissions]
        if missing:
            role.permissions = permissions + missing
            role.save(update_fields=["permissions"])


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0001_initial"),
        ("tenancy", "0003_staff_direct_leader"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
