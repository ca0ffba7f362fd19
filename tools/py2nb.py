"""Convert a jupytext 'percent' script into an nbdev notebook (a drafting aid; the notebook is the source of truth).

Usage: python tools/py2nb.py draft.py nbs/NN_name.ipynb      (script -> notebook)
       python tools/py2nb.py nbs/NN_name.ipynb draft.py      (notebook -> script, for editing)
Cells start with '# %%' (code) or '# %% [markdown]' (markdown, each line prefixed with '# ').
"""
import json
import re
import sys
from pathlib import Path


def convert(text):
    cells, kind, lines = [], None, []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(re.sub(r"^# ?", "", l) for l in body.splitlines())
        if not body.strip():
            return
        cell = {"cell_type": kind, "metadata": {}, "source": body.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)

    for line in text.splitlines():
        m = re.match(r"^# %%(.*)$", line)
        if m:
            flush()
            kind, lines = ("markdown" if "[markdown]" in m.group(1) else "code"), []
        else:
            lines.append(line)
    flush()
    return {
        "cells": cells,
        "metadata": {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def to_script(nb):
    out = []
    for c in nb["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "markdown":
            out.append("# %% [markdown]\n" + "\n".join(("# " + l).rstrip() for l in src.splitlines()))
        else:
            out.append("# %%\n" + src)
    return "\n\n".join(out) + "\n"


if __name__ == "__main__":
    src, dst = sys.argv[1], sys.argv[2]
    if src.endswith(".ipynb"):
        Path(dst).write_text(to_script(json.loads(Path(src).read_text())))
        sys.exit(print(f"wrote {dst}"))
    nb = convert(Path(src).read_text())
    for i, c in enumerate(nb["cells"]):
        c["id"] = f"c{i:03d}"
    Path(dst).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {dst} ({len(nb['cells'])} cells)")
