"""The access log files the runtime owns: owner-only, rotated past their limit with the
Envoy told to reopen (SIGUSR1), read back from the end; and the pod log endpoint's reading
(time-ordered merge of Envoy's output and the access log, following across a rotation)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from meshpilot.proxy.access_log import AccessLogFile, access_log_path, tail_lines
from meshpilot.server.pod_logs import LogSource, _Follower, parse_tail, read_logs, stamp


def test_the_file_is_next_to_the_proxy_and_owner_only(tmp_path: Path) -> None:
    path = access_log_path(tmp_path / "sidecars", "web-1")
    assert path == tmp_path / "sidecars" / "web-1.access.log"
    path.parent.mkdir()
    path.write_text("old\n")
    os.chmod(path, 0o644)
    AccessLogFile(path).prepare()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "old\n"  # prepared, not truncated


def test_rotation_past_the_limit_tells_envoy_to_reopen(tmp_path: Path) -> None:
    """A child standing in for Envoy records the SIGUSR1 it gets."""
    marker = tmp_path / "got-usr1"
    child = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGUSR1, lambda *a: open({str(marker)!r}, 'w').close())\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        log = AccessLogFile(tmp_path / "p.access.log", limit=100)
        log.prepare()
        log.path.write_text("x" * 50 + "\n")
        assert not log.upkeep(0.0, child.pid)  # under the limit
        log.path.write_text("y" * 150 + "\n")
        assert not log.upkeep(0.5, child.pid)  # checked at most once a second
        assert log.upkeep(1.5, child.pid)
        assert log.rotated_path.read_text() == "y" * 150 + "\n"
        assert log.path.read_text() == ""
        assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
        deadline = time.monotonic() + 5
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists()
        log.path.write_text("z" * 150 + "\n")  # a second rotation replaces the first
        assert log.upkeep(3.0, child.pid)
        assert log.rotated_path.read_text() == "z" * 150 + "\n"
        log.remove()
        assert not log.path.exists() and not log.rotated_path.exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def test_tail_reads_across_the_rotated_file(tmp_path: Path) -> None:
    old, live = tmp_path / "a.1", tmp_path / "a"
    old.write_text("".join(f"old {i}\n" for i in range(5)))
    live.write_text("".join(f"new {i}\n" for i in range(3)))
    assert tail_lines([old, live], 2) == ["new 1", "new 2"]
    assert tail_lines([old, live], 5) == ["old 3", "old 4", "new 0", "new 1", "new 2"]
    assert tail_lines([old, live], None)[0] == "old 0"
    assert tail_lines([old, live], 0) == []
    assert tail_lines([tmp_path / "missing", live], 10) == ["new 0", "new 1", "new 2"]
    big = tmp_path / "big"
    big.write_text("".join(f"line {i}\n" for i in range(20000)))
    assert tail_lines([big], 3, chunk=1024) == ["line 19997", "line 19998", "line 19999"]


def test_stamps_of_both_kinds_of_line() -> None:
    assert stamp("[2026-12-07T06:10:01.500Z] \"GET / HTTP/1.1\" 200") == 1796623801.5
    local = stamp("[2026-12-07 06:10:01.500][12][warning][config] x")
    assert local is not None and abs(local - time.mktime((2026, 12, 7, 6, 10, 1, 0, 0, -1))
                                     - 0.5) < 1e-6
    assert stamp("continuation line") is None


def test_envoy_output_and_access_log_merge_in_time_order(tmp_path: Path) -> None:
    envoy, access = tmp_path / "p.log", tmp_path / "p.access.log"
    t = time.localtime(1796623801)
    local = time.strftime("%Y-%m-%d %H:%M:%S", t)
    envoy.write_text(f"[{local}.200][1][warning][main] between\n  detail\n")
    access.write_text("[2026-12-07T06:10:01.100Z] first\n[2026-12-07T06:10:01.300Z] last\n")
    sources = [LogSource((envoy,)), LogSource((tmp_path / "none.1", access))]
    assert read_logs(sources, None) == [
        "[2026-12-07T06:10:01.100Z] first", f"[{local}.200][1][warning][main] between",
        "  detail", "[2026-12-07T06:10:01.300Z] last"]
    assert read_logs(sources, 1) == ["[2026-12-07T06:10:01.300Z] last"]


def test_following_survives_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "p.access.log"
    path.write_text("before\n")
    follower = _Follower(path)
    assert follower.read() == []
    with open(path, "a") as fh:
        fh.write("one\ntw")
    assert follower.read() == ["one"]
    with open(path, "a") as fh:
        fh.write("o\n")
    assert follower.read() == ["two"]
    os.replace(path, tmp_path / "p.access.log.1")
    path.write_text("fresh\n")
    assert follower.read() == ["fresh"]
    follower.close()


def test_lines_written_around_a_rotation_are_not_lost(tmp_path: Path) -> None:
    """The writer (Envoy) keeps its handle on the renamed file until it reopens its log:
    a line written just before the rename, and one written to the renamed file after
    the fresh one appeared, are both read (the follow e2e test once missed its request's
    line this way)."""
    path = tmp_path / "p.access.log"
    path.write_text("")
    follower = _Follower(path)
    writer = open(path, "a")  # noqa: SIM115 - Envoy's handle, closed below
    writer.write("before the rename\n")
    writer.flush()
    os.replace(path, tmp_path / "p.access.log.1")
    path.write_text("in the fresh file\n")
    writer.write("late, in the renamed file\n")
    writer.flush()
    # the renamed file is read to its end first, then the fresh one
    assert follower.read() == ["before the rename", "late, in the renamed file",
                               "in the fresh file"]
    writer.write("later still\n")
    writer.close()
    assert follower.read() == ["later still"]
    follower.close()


def test_tail_lines_parameter() -> None:
    assert parse_tail(None) is None and parse_tail("") is None and parse_tail("10") == 10
    for bad in ("-1", "ten"):
        try:
            parse_tail(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
