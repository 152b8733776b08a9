"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright's sync API.

Playwright's sync API runs an asyncio event loop in the test's thread, which makes Django
refuse ORM calls there ("You cannot call this from an async context"); the tests only use
the ORM to set data up, so that guard is switched off for this folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from siyu.testing.console import ensure_messages_compiled

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
ensure_messages_compiled()

CHROMIUM = os.environ.get("SIYU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "var" / "browser"


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (Debian package chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    """A fresh browser tab with an English browser: the console must still open in Chinese."""
    context = chromium.new_context(locale="en-US", viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.console_errors = []
    tab.on("pageerror", lambda error: tab.console_errors.append(str(error)))
    yield tab
    context.close()


@pytest.fixture
def screenshot():
    """Save a full-page screenshot under var/browser/ and return its path."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def take(tab, name: str) -> Path:
        path = SCREENSHOT_DIR / f"{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def sign_in():
    """``sign_in(page, base_url, username)``: log in to the console through its form."""
    from siyu.testing.factories import TEST_PASSWORD

    def login(tab, base_url: str, username: str) -> None:
        tab.goto(f"{base_url}/console/")
        tab.fill("input[name=username]", username)
        tab.fill("input[name=password]", TEST_PASSWORD)
        with tab.expect_navigation():
            tab.click("#login-form button[type=submit]")

    return login
