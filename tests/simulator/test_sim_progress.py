"""agent-sim's progress on a terminal: one line redrawn in place, nothing left behind (no rich)."""
from __future__ import annotations

import io
import sys
from types import SimpleNamespace

from simulator.commands import _common


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_bar_redraws_one_line_and_clears_it(monkeypatch):
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    with _common.progress_bar(SimpleNamespace(quiet=False), "replications", 4) as update:
        for done in range(1, 5):
            update(done)
    out = tty.getvalue()
    assert "\n" not in out and out.endswith("\r\x1b[2K")
    assert "[" + "#" * 30 + "] 100.0%" in out  # the last update is always drawn


def test_bar_line_reads_share_and_time_left():
    bar = _common._TerminalBar("points", 10)
    assert bar.line(5, 20.0) == f"points [{'#' * 15}{'.' * 15}]  50.0% 20 s elapsed, ~20 s left"
    assert bar.line(3, 1.0).startswith("points [#########.....")
    assert _common._TerminalBar("planning", None).line(7, 3.0) == "planning 7 done, 3 s elapsed"
