"""End to end: start JupyterLab (private state, 127.0.0.1, random port and token), open demos/landmark_demo.ipynb in
Debian's Chromium through Playwright, run it, drag the yaw slider, and check that the figure changed. Screenshots
before and after are kept in results/e2e (REENACTBOOK_E2E_RESULTS)."""
import time

import numpy as np
import pytest
from PIL import Image

from e2e_lab import (FIGURE, STATUS, chromium, drag_slider, error_outputs, figure_source, jupyter_lab, run_demo,
                     slider_readout, tiny_models, wait_settled, write_demo)

pytestmark = pytest.mark.e2e


def test_demo_notebook_in_jupyterlab(e2e_tools, e2e_results, tmp_path):
    started = time.monotonic()
    root = tmp_path / "root"
    root.mkdir()
    models = tiny_models(tmp_path / "models")
    notebook = write_demo(root, source="synthetic:3", size=128, identity=None, **models)
    with jupyter_lab(root, tmp_path / "jupyter", log=e2e_results / "jupyter.log") as (base, token), \
            chromium(tmp_path / "chromium") as page:
        try:
            run_demo(page, base, token, notebook.name)
            assert error_outputs(page) == []
            assert "reenactment" in page.locator(STATUS).inner_text()
            figure = page.locator(FIGURE)
            figure.screenshot(path=e2e_results / "before.png")
            before_source, before_readout = figure_source(page), slider_readout(page, "yaw")

            drag_slider(page, "yaw", 30)
            page.wait_for_function(f"old => document.querySelector('{FIGURE}').src !== old", arg=before_source)
            wait_settled(page)
            figure.screenshot(path=e2e_results / "after.png")
            page.screenshot(path=e2e_results / "page.png")
        except Exception:
            page.screenshot(path=e2e_results / "failure.png")
            raise
        after_readout = slider_readout(page, "yaw")
        assert before_readout.strip() in ("0", "0.0", "0.00") and float(after_readout) > 5, (before_readout, after_readout)
        assert error_outputs(page) == []
        table = page.locator(".reenactbook-similarity").inner_text()
    before = np.asarray(Image.open(e2e_results / "before.png").convert("RGB"), np.int16)
    after = np.asarray(Image.open(e2e_results / "after.png").convert("RGB"), np.int16)
    assert before.shape == after.shape
    changed = (np.abs(before - after).max(-1) > 40).mean()
    assert changed > 0.01, f"only {changed:.2%} of the figure changed after moving the yaw slider"
    assert "LSG" in table and "landmark identity" in table
    print(f"e2e: {time.monotonic() - started:.0f} s, {changed:.1%} of the figure changed; screenshots in {e2e_results}")
