"""The scorer child lowers its priority where the scheduler looks: its niceness and its session's autogroup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

AUTOGROUP = Path("/proc/self/autogroup")

SCRIPT = """
import os, sys
from consumers.child.host import lower_priority
niceness = lower_priority(int(sys.argv[1]), sys.argv[2])
print(niceness, os.nice(0))
"""


def _run(increment: int, autogroup: str, new_session: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(increment), autogroup], capture_output=True,
                          text=True, start_new_session=new_session, timeout=60, check=True)


def _own_nice() -> int:
    return os.nice(0)


@pytest.mark.skipif(not AUTOGROUP.exists(), reason="kernel without CONFIG_SCHED_AUTOGROUP")
def test_session_leader_sets_its_autogroup_nice() -> None:
    # the real file: in its own session the child may change its own group (raising needs no privilege)
    script = SCRIPT + "print(open('/proc/self/autogroup').read().strip())\n"
    out = subprocess.run([sys.executable, "-c", script, "7", str(AUTOGROUP)], capture_output=True, text=True,
                         start_new_session=True, timeout=60, check=True)
    niceness, effective, group = out.stdout.split(maxsplit=2)
    expected = min(19, _own_nice() + 7)
    assert int(niceness) == int(effective) == expected
    assert group.strip().endswith(f"nice {expected}"), group
    assert out.stderr == ""


def test_sharing_a_session_leaves_the_group_alone(tmp_path: Path) -> None:
    # not a session leader: writing the group's nice would slow down every process of the caller's session
    fake = tmp_path / "autogroup"
    fake.write_text("untouched")
    out = _run(5, str(fake), new_session=False)
    assert int(out.stdout.split()[0]) == min(19, _own_nice() + 5)
    assert fake.read_text() == "untouched"


def test_session_leader_writes_the_group_file(tmp_path: Path) -> None:
    fake = tmp_path / "autogroup"
    fake.write_text("")
    out = _run(3, str(fake), new_session=True)
    assert fake.read_text() == out.stdout.split()[0] == str(min(19, _own_nice() + 3))


def test_a_refused_write_is_logged_not_fatal(tmp_path: Path) -> None:
    missing_dir = tmp_path / "dir"
    missing_dir.mkdir()  # a directory: exists, but open(..., "w") fails like a refused write does
    out = _run(2, str(missing_dir), new_session=True)
    assert int(out.stdout.split()[0]) == min(19, _own_nice() + 2)
    assert "could not set the autogroup nice" in out.stderr


IDLE_SCRIPT = """
import os, threading
from consumers.child.host import run_when_idle
ok = run_when_idle()
seen = []
t = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0)))  # started later: inherits it
t.start(); t.join()
print(ok, os.sched_getscheduler(0) == os.SCHED_IDLE, seen[0] == os.SCHED_IDLE)
"""


def test_run_when_idle_covers_threads_started_later() -> None:
    out = subprocess.run([sys.executable, "-c", IDLE_SCRIPT], capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.split() == ["True", "True", "True"], out.stderr
