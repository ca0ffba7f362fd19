"""Helpers of the browser end-to-end test: a private JupyterLab server, Debian's Chromium through Playwright, and the
steps that run the demo notebook and move one of its sliders. Used by test_demo_e2e.py and screenshot.py.

Nothing of the user's Jupyter or browser state is read or written: the server gets a temporary root folder, config,
data, runtime, settings and workspace folders, a random free port on 127.0.0.1 and a random token; Chromium gets a
fresh profile and flags that keep it off the network. No browser is downloaded (`playwright install` is never run)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demos" / "landmark_demo.ipynb"
CHROMIUM = os.environ.get("REENACTBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # Playwright adds --headless
VIEWPORT = {"width": 1680, "height": 1200}


def missing_tools() -> str | None:
    "Why the browser test cannot run here (None when it can)."
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (.venv/bin/pip install -c constraints.txt playwright)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium, or set REENACTBOOK_CHROMIUM)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_demo(root: Path, **parameters) -> Path:
    "Copy the demo notebook into `root` with its parameters cell set to `parameters` (Python values)."
    notebook = json.loads(DEMO.read_text())
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code" and "parameters" in c["metadata"].get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    for name, value in parameters.items():
        index = next((i for i, line in enumerate(lines) if re.match(rf"{name}\s*=", line)), None)
        if index is None:
            raise KeyError(f"the demo's parameters cell has no {name!r}")
        lines[index] = f"{name} = {value!r}"
    cell["source"] = "\n".join(lines) + "\n"
    path = root / DEMO.name
    path.write_text(json.dumps(notebook, indent=1))
    return path


@contextlib.contextmanager
def jupyter_lab(root: Path, work: Path, timeout: float = 120.0, log: Path | None = None):
    "A JupyterLab server on 127.0.0.1 serving `root`, with all its state under `work`; yields (base url, token)."
    port, token = free_port(), secrets.token_hex(16)
    dirs = {name: work / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    notification = dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True, exist_ok=True)
    notification.write_text(json.dumps({"fetchNews": "false"}))  # no "get notified about Jupyter news?" toast
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
           "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
           "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]), "IPYTHONDIR": str(dirs["ipython"]),
           "JUPYTER_NO_CONFIG": "1",  # no user or system config files
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the kernel spec runs `python`
           "REENACTBOOK_NO_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    output = open(log or work / "jupyter.log", "wb")
    server = subprocess.Popen(command, env=env, cwd=root, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {server.returncode}; see {output.name}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"JupyterLab did not answer on {base} within {timeout:.0f} s; see {output.name}")
            time.sleep(0.5)
        yield base, token
    finally:
        with contextlib.suppress(OSError):  # shut kernels down cleanly, then the server's own process group
            urllib.request.urlopen(urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST"), timeout=5)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        output.close()


@contextlib.contextmanager
def chromium(profile: Path):
    "A headless Debian Chromium page (fresh profile in `profile`) driven by Playwright."
    from playwright.sync_api import sync_playwright
    shutil.rmtree(profile, ignore_errors=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, viewport=VIEWPORT)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


FIGURE = ".reenactbook-demo .reenactbook-figure"
STATUS = ".reenactbook-demo .reenactbook-status"


def run_demo(page, base: str, token: str, notebook: str, timeout: float = 240.0) -> None:
    "Open `notebook` in JupyterLab, run all cells, and wait until the demo widget shows its figure."
    page.set_default_timeout(timeout * 1000)
    page.goto(f"{base}/lab/tree/{notebook}?token={token}&reset")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    deadline = time.monotonic() + timeout
    while True:  # JupyterLab may ask which kernel to start: take the preferred one (the notebook's python3)
        dialog = page.locator(".jp-Dialog")
        if dialog.count() and "Select Kernel" in dialog.inner_text():
            dialog.locator(".jp-mod-accept").click()
        elif page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() and \
                "No Kernel" not in page.locator(".jp-NotebookPanel-toolbar").inner_text():
            break
        if time.monotonic() > deadline:
            raise TimeoutError("the notebook's kernel did not start")
        time.sleep(0.5)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    started = "() => [...document.querySelectorAll('.jp-Cell .jp-InputPrompt')].some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"
    for attempt in range(3):  # a Run All issued while JupyterLab is still settling can be dropped: issue it again
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            page.wait_for_function(started, timeout=30_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    page.wait_for_selector(FIGURE + "[src]")
    wait_settled(page, timeout)


def figure_source(page) -> str:
    return page.locator(FIGURE).get_attribute("src") or ""


def wait_settled(page, timeout: float = 120.0, quiet: float = 1.5) -> None:
    "Wait until the kernel is idle and the figure has not changed for `quiet` seconds."
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() > 0
        current = figure_source(page)
        if current != last:
            last, since = current, time.monotonic()
        elif idle and time.monotonic() - since >= quiet and "when the sliders settle" not in page.locator(STATUS).inner_text():
            return
        time.sleep(0.25)
    raise TimeoutError(f"the demo did not settle within {timeout:.0f} s")


def drag_slider(page, name: str, pixels: float) -> None:
    "Drag the handle of slider `name` (a `CONTROLS` name) sideways by `pixels`, like a user would."
    handle = page.locator(f".reenactbook-demo .reenactbook-{name.replace('_', '-')} .noUi-handle")
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + pixels, y, steps=12)
    page.mouse.up()


def slider_readout(page, name: str) -> str:
    return page.locator(f".reenactbook-demo .reenactbook-{name.replace('_', '-')} .widget-readout").inner_text()


LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d INFO reenactbook")  # core.get_logger's format: a note (e.g. which model was used), not an error


def error_outputs(page) -> list[str]:
    "Texts of the error outputs (tracebacks, warnings) in the notebook; stderr that holds only INFO log lines is not one."
    texts = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                         ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").all_inner_texts()
    return [t for t in texts if not all(LOG_LINE.match(line) for line in t.strip().splitlines())]


def tiny_models(folder: Path) -> dict:
    "A quickly trained LSG checkpoint (a few steps on the small example dataset) and an untrained small reenactor checkpoint."
    import torch
    from reenactbook.config import load_options
    from reenactbook.lsg_train import train_lsg
    from reenactbook.reenactor import Reenactor, ReenactorConfig
    from reenactbook.views import _example_dataset
    data = _example_dataset(folder / "data", identities=3, videos=2, frames=10)
    options = load_options("tiny", {"lsg.hidden": 32, "lsg.head_hidden": 32, "lsg.batch_size": 8, "lsg.steps": 4,
                                    "lsg.log_every": 2, "lsg.checkpoint_every": 4})
    lsg = train_lsg(options, folder / "lsg", dataset=data, show_progress=False)
    torch.manual_seed(0)
    reenactor = Reenactor(ReenactorConfig(image_size=64, ngf=8, n_blocks=1, ndf=4), discriminator=False)
    return {"lsg_checkpoint": str(lsg), "reenactor_checkpoint": str(reenactor.save(folder / "reenactor.safetensors"))}
