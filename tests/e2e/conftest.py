"""The browser end-to-end tests: `pytest -m e2e tests/e2e` (make e2e). They skip when Chromium or Playwright is
missing, unless REENACTBOOK_REQUIRE_E2E=1 (CI), where a missing tool fails the test."""
import os

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: browser end-to-end test (JupyterLab + Chromium through Playwright)")


@pytest.fixture(scope="session")
def e2e_tools():
    "Skip (or, with REENACTBOOK_REQUIRE_E2E=1, fail) when the browser tools are not installed."
    from e2e_lab import missing_tools
    reason = missing_tools()
    if reason:
        if os.environ.get("REENACTBOOK_REQUIRE_E2E", "") not in ("", "0"):
            pytest.fail(f"REENACTBOOK_REQUIRE_E2E=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def e2e_results():
    "Where screenshots and logs go (REENACTBOOK_E2E_RESULTS, default results/e2e in the checkout)."
    from e2e_lab import REPO
    from pathlib import Path
    path = Path(os.environ.get("REENACTBOOK_E2E_RESULTS") or REPO / "results" / "e2e")
    path.mkdir(parents=True, exist_ok=True)
    return path
