"""A real browser for the console tests: Debian's `chromium` driven by Playwright.

Playwright's own browser downloads are never used (no `playwright install`): the tests launch
the system's /usr/bin/chromium, which CI installs with apt (see .ci/run). Where it is missing
the browser tests skip, except under CI (`CI=true`), where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.ci import unavailable

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
"""Screenshots land here (git-ignored), for a person or CI to look at."""
VIEWPORT = {"width": 1440, "height": 900}
"""A laptop screen."""


def require_browser() -> None:
    """Skip (fail, under CI) unless Playwright and /usr/bin/chromium are both here."""
    missing = []
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if not missing:
        return
    unavailable("browser tests need " + " and ".join(missing))


@contextlib.asynccontextmanager
async def chromium(*args: str) -> AsyncIterator[Browser]:
    """Headless system Chromium with `args` besides its usual ones, closed on exit."""
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, *args]
        )
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def fresh_page(browser: Browser) -> AsyncIterator[Page]:
    """A page in its own context (its own cookies). Script errors on the page fail the test
    when the block ends."""
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"script errors on the page: {errors}"


async def log_in(page: Page, base: str, name: str, password: str) -> None:
    """Log in through the login form; returns once the console's live feed is connected."""
    await page.goto(f"{base}/login")
    await page.fill("#name", name)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/console", timeout=10_000)
    await page.wait_for_selector('#conn[data-state="open"]', timeout=10_000)


async def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as artifacts/<name>."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    return path
