"""reenactbook.progress: one progress helper (a bar on a terminal or in Jupyter, plain log lines elsewhere, quiet on request)."""
import logging
import re
import sys

from reenactbook.core import get_logger
from reenactbook.progress import Progress, duration


class _Terminal:
    "A stand-in stderr that says it is a terminal."
    def __init__(self): self.text = []
    def isatty(self): return True
    def write(self, text): self.text.append(text)
    def flush(self): pass


class _NotATerminal:
    def isatty(self): return False


def _capture():
    "Log messages of the package logger, and the handler to remove afterwards."
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    get_logger().addHandler(handler)
    return lines, handler


def test_progress_is_a_bar_on_a_terminal_lines_in_a_log_and_quiet_on_request(monkeypatch):
    lines, handler = _capture()
    try:
        monkeypatch.setenv("REENACTBOOK_NO_PROGRESS", "")
        report = Progress(4, desc="prep", unit="video", work_unit="frame", every=0.0)  # pytest's stderr is not a terminal
        report.update(add_work=10); report.update(1, work=50)
        report.close()
        assert report.bar is None and len([m for m in lines if m.startswith("prep: ")]) == 3
        assert re.search(r"prep: 1/4 videos \(25%\), 50 frames, [\d.]+ frames/s, 0:\d\d elapsed, about 0:\d\d left", lines[-2])
        assert lines[-1].startswith("prep: done, 1/4 videos")
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        lines.clear()
        report = Progress(4, desc="prep", unit="video", work_unit="frame", every=0.0)
        report.update(2, work=80)
        assert report.bar is not None and report.bar.n == 2 and not lines
        report.close()
        assert "2/4" in "".join(terminal.text)
        monkeypatch.setenv("REENACTBOOK_NO_PROGRESS", "1")
        report = Progress(4, desc="prep", unit="video", work_unit="frame", every=0.0)
        report.update(1, work=5); report.close()
        assert report.bar is None and not lines
    finally:
        get_logger().removeHandler(handler)


def test_frames_without_a_second_count_are_logged_with_their_rate_and_a_last_line(monkeypatch):
    monkeypatch.setenv("REENACTBOOK_NO_PROGRESS", "")
    lines, handler = _capture()
    try:
        with Progress(40, desc="reenact", unit="frame", every=0.0, stream=_NotATerminal()) as bar:
            for _ in range(4):
                bar.update(10)
    finally:
        get_logger().removeHandler(handler)
    assert bar.bar is None and len(lines) == 5
    assert "10/40 frames (25%)" in lines[0] and "frames/s" in lines[0] and lines[-1].startswith("reenact: done, 40/40")
    assert Progress(None, unit="frame", enabled=False).status().startswith("0 frames, ")
    assert (duration(59.6), duration(3725)) == ("1:00", "1:02:05")
