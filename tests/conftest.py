"""Shared fixtures. Tests that need ../shared read it through REENACTBOOK_SAMPLES / REENACTBOOK_WEIGHTS;
with REENACTBOOK_REQUIRE_SHARED=1 (set by .ci/run) a missing folder fails the test instead of skipping it."""
import os
from pathlib import Path

import pytest


def _shared(var: str, what: str) -> Path:
    value = os.environ.get(var, "")
    path = Path(value) if value else None
    if path is None or not path.is_dir():
        msg = f"{what} not found: set {var} (e.g. {var}=../shared/{'data' if 'SAMPLES' in var else 'weights'})"
        if os.environ.get("REENACTBOOK_REQUIRE_SHARED", "") not in ("", "0"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def samples_root() -> Path:
    "The real sample data folder (clips/, landmarked/, manifest.json)."
    return _shared("REENACTBOOK_SAMPLES", "sample data")


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    "The folder of real pretrained weight files with manifest.json."
    return _shared("REENACTBOOK_WEIGHTS", "shared weights")


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    "A private REENACTBOOK_CACHE for one test."
    path = tmp_path / "cache"
    monkeypatch.setenv("REENACTBOOK_CACHE", str(path))
    return path


from stand_ins import stand_ins  # noqa: E402  (the shared stand-in networks)


@pytest.fixture()
def loss_networks():
    "The stand-ins of `stand_ins()` as a fixture."
    return stand_ins()
