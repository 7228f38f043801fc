"""A headless Chromium driven by Selenium (Debian's ``chromium`` and ``chromium-driver``; scripts/setup.sh installs
them). A missing browser, driver or selenium fails the test: the console's browser tests are required."""

from __future__ import annotations

import shutil

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


def _first(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if shutil.which(f"/usr/bin/{name}") else None)
        if path:
            return path
    return None


@pytest.fixture
def browser():
    """A headless Chromium (a 1400x1000 window); closed after the test."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[dev]' (scripts/setup.sh)")
    binary, driver_path = _first(BROWSERS), _first(DRIVERS)
    if binary is None or driver_path is None:
        pytest.fail(
            "chromium and chromedriver are missing: apt-get install chromium chromium-driver (scripts/setup.sh)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
