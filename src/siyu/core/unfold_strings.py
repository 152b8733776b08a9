"""Strings of django-unfold's own pages, marked here so that our catalogue translates them.

Why: django-unfold 0.91 ships no Chinese catalogue, so its buttons and hints would stay in
English on a Chinese console. ``makemessages`` only reads our package; listing the msgids
here (unchanged, with ``gettext_noop``) puts them in ``locale/zh_Hans/.../django.po``, and
Django's catalogue lookup is by msgid, whichever app renders the string.
"""

from django.utils.translation import gettext_noop

UNFOLD_MESSAGES = (
    gettext_noop("Add row"),
    gettext_noop("All applications"),
    gettext_noop("Apply Filters"),
    gettext_noop("Cancel"),
    gettext_noop("Choose file to upload"),
    gettext_noop("Click to cancel"),
    gettext_noop("Click to download"),
    gettext_noop("Dark"),
    gettext_noop("Date"),
    gettext_noop("Expand row"),
    gettext_noop("False"),
    gettext_noop("Filters"),
    gettext_noop("General"),
    gettext_noop("Go back"),
    gettext_noop("Image preview"),
    gettext_noop("Light"),
    gettext_noop("Loading more results..."),
    gettext_noop("More actions"),
    gettext_noop("Next"),
    gettext_noop("No data"),
    gettext_noop("No recent searches"),
    gettext_noop("No results found"),
    gettext_noop("No results matching your query"),
    gettext_noop("Previous"),
    gettext_noop("Recent searches"),
    gettext_noop("Reset filters"),
    gettext_noop("Return to site"),
    gettext_noop("Run"),
    gettext_noop("Search apps and models..."),
    gettext_noop("Select action"),
    gettext_noop("Select action to run"),
    gettext_noop("Select all rows"),
    gettext_noop("Select record"),
    gettext_noop("Select value"),
    gettext_noop("Submit"),
    gettext_noop("System"),
    gettext_noop("This item will be deleted."),
    gettext_noop("This page yielded into no results. Create a new item or reset your filters."),
    gettext_noop("Toggle password visibility"),
    gettext_noop("True"),
    gettext_noop("Type to search"),
    gettext_noop("Welcome"),
    gettext_noop("Welcome back to"),
    gettext_noop("You have been successfully logged out from the administration"),
)
