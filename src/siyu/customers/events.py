"""The event types the customers domain records (``siyu.core.events.record_event``).

Every event carries ``customer_id`` and, when a staff member is involved, ``staff``; the
payloads name the WeCom ids so that handlers need no look-up to route them. Idempotency
keys are built from WeCom's own ids and timestamps (see ``services``), so a retried
callback or a re-run sync never records a fact twice.
"""

from __future__ import annotations

# A customer appeared for the tenant for the first time (their first friendship).
# key "customer.added:{external_userid}"
CUSTOMER_ADDED = "customer.added"
# Profile fields (name, avatar, unionid, company, ...) changed.
# key "customer.updated:{external_userid}:{seen_ms}:{digest}"; payload {"changes": {f: [old, new]}}
CUSTOMER_UPDATED = "customer.updated"
# The customer's owner (staff of the earliest active friendship) changed from one staff to
# another (not recorded for the first owner: customer.added names them).
# key "customer.owner_changed:{external_userid}:{new_owner_userid}:{cause_seconds}" where the
# cause is the add (added_at) or the deletion (at) that moved the ownership
CUSTOMER_OWNER_CHANGED = "customer.owner_changed"
# No active friendship remains (churn). key "customer.lost:{external_userid}:{at_seconds}"
CUSTOMER_LOST = "customer.lost"
# A lost customer added a staff again. key "customer.returned:{external_userid}:{added_seconds}"
CUSTOMER_RETURNED = "customer.returned"

# A staff ↔ customer friendship began (or began again after a deletion).
# key "follow.added:{external_userid}:{userid}:{added_at_seconds}"
FOLLOW_ADDED = "follow.added"
# Remark, description, mobiles, ... of a friendship changed.
# key "follow.updated:{external_userid}:{userid}:{seen_ms}:{digest}"
FOLLOW_UPDATED = "follow.updated"
# The customer deleted the staff (a churn signal) / the staff deleted the customer.
# key "follow.deleted_by_customer:{external_userid}:{userid}:{added_at_seconds}" (the
# friendship that began at added_at ended; the same for deleted_by_staff)
FOLLOW_DELETED_BY_CUSTOMER = "follow.deleted_by_customer"
FOLLOW_DELETED_BY_STAFF = "follow.deleted_by_staff"
# The corp tags on a friendship changed. payload {"added": [tag_id], "removed": [tag_id]}
# key "follow.tags_changed:{external_userid}:{userid}:{seen_ms}:{digest}"
FOLLOW_TAGS_CHANGED = "follow.tags_changed"

# The corp tag library changed in a sync. key "tag.synced:{seen_ms}:{digest}"
TAGS_SYNCED = "tag.synced"

# --- tags put on and taken off by Siyu (siyu.customers.tagging, .autotag) -----------------
# The customer now carries the tag (console, API, bulk job or auto-tag rule). payload
# {"tag_id", "tag_name", "wecom_tag_id", "via": "console" | "api" | "bulk" | "autotag", ...}
# key "customer.tagged:{customer_id}:{tag_id}:{link_id}" (the CustomerTag row's id: tagging
# again after an untag is a new fact, the same tagging retried is not)
CUSTOMER_TAGGED = "customer.tagged"
# The customer no longer carries the tag. key "customer.untagged:{customer_id}:{tag_id}:{link_id}"
CUSTOMER_UNTAGGED = "customer.untagged"
# The tag library was edited in Siyu (and WeCom accepted it). payload {"name", "wecom_id", ...}
# keys "{type}:{row_id}:{digest of the change}"
TAG_GROUP_CREATED = "tag_group.created"
TAG_GROUP_UPDATED = "tag_group.updated"
TAG_GROUP_DELETED = "tag_group.deleted"
TAG_CREATED = "tag.created"
TAG_UPDATED = "tag.updated"
TAG_DELETED = "tag.deleted"

ALL = (
    CUSTOMER_ADDED,
    CUSTOMER_UPDATED,
    CUSTOMER_OWNER_CHANGED,
    CUSTOMER_LOST,
    CUSTOMER_RETURNED,
    FOLLOW_ADDED,
    FOLLOW_UPDATED,
    FOLLOW_DELETED_BY_CUSTOMER,
    FOLLOW_DELETED_BY_STAFF,
    FOLLOW_TAGS_CHANGED,
    TAGS_SYNCED,
    CUSTOMER_TAGGED,
    CUSTOMER_UNTAGGED,
    TAG_GROUP_CREATED,
    TAG_GROUP_UPDATED,
    TAG_GROUP_DELETED,
    TAG_CREATED,
    TAG_UPDATED,
    TAG_DELETED,
)
