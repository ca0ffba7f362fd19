"""Screenshot of the demo widget for the README (docs/widgets.png), taken the way the e2e test works: JupyterLab and
Debian's Chromium through Playwright, the demo notebook run, two sliders moved.

    .venv/bin/python tests/e2e/screenshot.py docs/widgets.png --reenactor runs/tiny/reenactor.safetensors

The LSG is the cached tiny model (`lsg.pretrained_lsg("tiny")`, trained on first use) unless --lsg names a checkpoint.
The PNG is reduced to a 256-colour palette so that it stays small (< 300 KB)."""
import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from e2e_lab import chromium, drag_slider, error_outputs, jupyter_lab, missing_tools, run_demo, wait_settled, write_demo  # noqa: E402


def small_png(png: bytes, limit: int = 300_000) -> bytes:
    "The screenshot as a palette PNG, scaled down until it is under `limit` bytes."
    image = Image.open(io.BytesIO(png)).convert("RGB")
    while True:
        buffer = io.BytesIO()
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buffer, format="PNG", optimize=True)
        if buffer.tell() < limit or image.width < 400:
            return buffer.getvalue()
        image = image.resize((int(image.width * 0.85), int(image.height * 0.85)), Image.LANCZOS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG to write (e.g. docs/widgets.png)")
    parser.add_argument("--source", default="synthetic:3")
    parser.add_argument("--lsg", default="auto", help="LSG checkpoint (default: the cached tiny model)")
    parser.add_argument("--reenactor", default=None, help="reenactor checkpoint (default: none, landmark views only)")
    parser.add_argument("--identity", default="auto", help="identity embedder backend for CSIM ('none': off)")
    args = parser.parse_args()
    reason = missing_tools()
    if reason:
        sys.exit(f"cannot take the screenshot: {reason}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "root"
        root.mkdir()
        notebook = write_demo(root, source=args.source, size=128, lsg_checkpoint=args.lsg,
                              reenactor_checkpoint=args.reenactor, identity=None if args.identity == "none" else args.identity)
        with jupyter_lab(root, tmp / "jupyter") as (base, token), chromium(tmp / "chromium") as page:
            run_demo(page, base, token, notebook.name, timeout=900)
            drag_slider(page, "nose_width", 30)
            wait_settled(page)
            drag_slider(page, "yaw", 14)
            wait_settled(page)
            errors = error_outputs(page)
            if errors:
                sys.exit("the demo notebook failed:\n" + "\n".join(errors))
            png = page.locator(".reenactbook-demo").screenshot()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(small_png(png))
    print(f"{args.out}: {args.out.stat().st_size / 1000:.0f} KB, {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
