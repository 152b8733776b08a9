"""The event types the segments domain records (``siyu.core.events.record_event``).

Segments are definitions, not customers: their events carry no ``customer_id``; ``staff``
is who acted. Keys are built from the segment's id and the moment of the change.
"""

from __future__ import annotations

# A segment was defined. key "segment.created:{segment_id}"; payload {"name", "kind", "rules"}
SEGMENT_CREATED = "segment.created"
# Its name, description, kind or rules changed.
# key "segment.updated:{segment_id}:{updated_at_ms}"; payload {"changes": {field: [old, new]}}
SEGMENT_UPDATED = "segment.updated"
# It was deleted (its members and size history with it). key "segment.deleted:{segment_id}"
SEGMENT_DELETED = "segment.deleted"
# A static segment's members were (re)built. payload {"members", "added", "removed"}
# key "segment.snapshot_taken:{segment_id}:{taken_at_ms}"
SEGMENT_SNAPSHOT_TAKEN = "segment.snapshot_taken"
# RFM scores were recomputed for the tenant. key "segments.rfm_computed:{computed_at}"
RFM_COMPUTED = "segments.rfm_computed"

ALL = (
    SEGMENT_CREATED,
    SEGMENT_UPDATED,
    SEGMENT_DELETED,
    SEGMENT_SNAPSHOT_TAKEN,
    RFM_COMPUTED,
)
