"""Fill ``CustomerTag`` from the tags staff had already marked (``FollowTag``) on active
friendships: the CRM's one-row-per-customer-and-tag view of data synced before it existed."""

from django.db import migrations


def fill_customer_tags(apps, schema_editor):
    FollowTag = apps.get_model("customers", "FollowTag")
    CustomerTag = apps.get_model("customers", "CustomerTag")
    pairs = (
        FollowTag.objects.filter(follow__status="active")
        .values_list("tenant_id", "follow__customer_id", "tag_id")
        .distinct()
    )
    batch = []
    for tenant_id, customer_id, tag_id in pairs.iterator(chunk_size=5000):
        batch.append(CustomerTag(tenant_id=tenant_id, customer_id=customer_id, tag_id=tag_id))
        if len(batch) >= 5000:
            CustomerTag.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    CustomerTag.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [("customers", "0002_crm")]

    operations = [migrations.RunPython(fill_customer_tags, migrations.RunPython.noop)]
