"""The event types the community domain records (``siyu.core.events.record_event``).

Every event carries ``group_id``, ``staff`` = the group's owner (so the owner's data scope
sees it) and, for customer members, ``customer_id``. Keys are built from WeCom's ids and
timestamps, so retried callbacks and re-run syncs never record a fact twice.
"""

from __future__ import annotations

# First time the group is seen. key "group.created:{chat_id}"
GROUP_CREATED = "group.created"
# Name, notice, owner or administrators changed. payload {"changes": {field: [old, new]}}
# key "group.updated:{chat_id}:{seen_ms}:{digest}"
GROUP_UPDATED = "group.updated"
# The group was dismissed (final). key "group.dismissed:{chat_id}"
GROUP_DISMISSED = "group.dismissed"
# A membership began. key "group.member_joined:{chat_id}:{userid}:{join_time_seconds}"
GROUP_MEMBER_JOINED = "group.member_joined"
# The membership that began at join_time ended.
# key "group.member_left:{chat_id}:{userid}:{join_time_seconds}"
GROUP_MEMBER_LEFT = "group.member_left"

ALL = (GROUP_CREATED, GROUP_UPDATED, GROUP_DISMISSED, GROUP_MEMBER_JOINED, GROUP_MEMBER_LEFT)
