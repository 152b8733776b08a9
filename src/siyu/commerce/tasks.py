"""Background work of the commerce domain (discovered by ``siyu.core.apps``)."""

from siyu.commerce import imports  # noqa: F401  (registers the orders.import job runner)
