"""Headless Chromium for the report's tests and the README's screenshot: found, launched offline, watched.

The browser is Debian's ``chromium`` (``apt-get install chromium``; or ``CHROMIUM_PATH``)
driven by Playwright over its pipe: nothing is downloaded.  Every host name resolves to
nothing (``--host-resolver-rules``), so neither the page nor Chromium's own background
services can reach a network, and every request the page makes is recorded: a
self-contained report makes exactly one, for itself.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ARGS", "SCREEN_BOX", "Watched", "chromium_path", "open_page"]

ARGS = ["--no-sandbox", "--disable-quic", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost"]

SCREEN_BOX = """e => { const b = e.getBBox(), m = e.getScreenCTM();
  return {x: m.a * b.x + m.e, y: m.d * b.y + m.f, width: m.a * b.width, height: m.d * b.height,
          shown: getComputedStyle(e).display !== 'none'}; }"""
"""An SVG element's geometry on the screen (CSS px, viewport): its box without the stroke's width."""


def chromium_path() -> str | None:
    """``CHROMIUM_PATH`` if set (and executable), else ``chromium`` / ``chromium-browser`` on PATH."""
    given = os.environ.get("CHROMIUM_PATH")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Watched:
    """An opened page with everything it said and asked for since it started loading."""

    page: Any
    url: str
    open_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_quiet(self) -> None:
        """No console error, no uncaught exception, no request but the page itself."""
        assert self.errors == [], self.errors
        assert self.requests == [self.url], self.requests


def open_page(browser: Any, path: Path, width: int = 1400, height: int = 1000) -> Watched:
    """Open the report at ``path`` from ``file://`` and wait until it has drawn (``data-ready`` on ``<html>``).

    ``open_s``: from the request to the page drawn, the user's wait.
    """
    page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
    watched = Watched(page, path.resolve().as_uri())
    page.on("console", lambda m: m.type == "error" and watched.errors.append(m.text))
    page.on("pageerror", lambda e: watched.errors.append(str(e)))
    page.on("request", lambda r: watched.requests.append(r.url))
    start = time.perf_counter()
    page.goto(watched.url)
    # a selector, not a script: the page's Content-Security-Policy forbids evaluating strings
    page.wait_for_selector("html[data-ready='true'], #report-error:not([hidden])", state="attached", timeout=10_000)
    watched.open_s = time.perf_counter() - start
    assert page.get_attribute("html", "data-ready") == "true", page.text_content("#report-error")
    return watched
