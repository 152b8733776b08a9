"""The customers domain's queued and periodic tasks (discovered by the worker).

Modules of the domain that define tasks are imported here so that the worker registers them.
"""

from siyu.customers import (
    autotag,  # noqa: F401  (hourly auto-tag rules)
    exports,  # noqa: F401  (export jobs' runner)
    handover,  # noqa: F401  (hand-over submission, results poll)
    imports,  # noqa: F401  (import jobs' runner)
    lifecycle,  # noqa: F401  (lifecycle stages: daily task, handlers)
    tagging,  # noqa: F401  (mark_tag mirrors, bulk tagging jobs)
)
