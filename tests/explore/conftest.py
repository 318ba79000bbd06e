"""A headless Chromium (Debian's `chromium`, driven by Playwright) for the page tests.

`make install` installs chromium from requirements-system.txt; Playwright's
own browser download (`playwright install`) is never used. Without chromium
the browser tests are skipped with a reason that says how to get it.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("EXPLORE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Set to a folder to save a screenshot of each page the browser tests open
# (how docs/screenshots/ is made).
SCREENSHOTS = os.environ.get("EXPLORE_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(
            f"NO BROWSER: {CHROMIUM} is missing, so the explorer's page tests did not run;"
            " `make install` installs Debian's chromium (requirements-system.txt)."
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop on this thread, and Django
    # then refuses ORM calls from it (SynchronousOnlyOperation) although they
    # are plain synchronous calls: allow them for these tests only.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()


@pytest.fixture
def staff_page(browser, live_server, django_user_model, client):
    """A page logged in as a staff member, collecting console errors in `page.errors`."""
    user = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(user)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{
        "name": "sessionid", "value": client.cookies["sessionid"].value,
        "url": live_server.url,
    }])
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    context.close()


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"))
