"""`gatewatch up` prints the console page's URL, signed in through the link once the worker wrote its token."""

from __future__ import annotations

from pathlib import Path

from gatewatch.config import Settings
from gatewatch.up import console_line


def test_console_line(tmp_path: Path) -> None:
    line = console_line(Settings(home=tmp_path))
    assert "http://127.0.0.1:8081/ " in line and str(tmp_path / "console-token") in line and "#token" not in line
    (tmp_path / "console-token").write_text("gwc-secret\n")
    assert console_line(Settings(home=tmp_path)).endswith("http://127.0.0.1:8081/#token=gwc-secret")
    line = console_line(Settings(home=tmp_path, worker={"console_host": "0.0.0.0", "console_port": 9100}))
    assert line.endswith("http://127.0.0.1:9100/#token=gwc-secret")
