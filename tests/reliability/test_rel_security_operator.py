"""Issue 11 item 10: a job cannot hang `reference-agent job UUID` nor inject terminal escapes."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from reference_agent.operator_view import visible

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\r\x9b"  # real control characters


def _job_command(agent, job: str) -> list[str]:
    return [sys.executable, "-m", "reference_agent", "job", job, "--state-dir", str(agent.state)]


def _read_all(fd: int, proc: subprocess.Popen, deadline: float) -> bytes:
    out = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_job_output_cannot_send_escapes_to_the_operators_terminal(start_agent):
    agent = start_agent()
    job = agent.submit(f"import sys\nsys.stdout.write({ESCAPES!r})\nprint('after')\n")
    agent.wait_done(job)
    master, slave = pty.openpty()
    proc = subprocess.Popen(_job_command(agent, job), stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        shown = _read_all(master, proc, time.monotonic() + 30)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        os.close(master)
        proc.kill()
        proc.wait()
    assert b"--- stdout ---" in shown and b"after" in shown
    assert b"\x1b" not in shown and b"\x07" not in shown and "\x9b".encode() not in shown
    assert b"\\x1b]0;owned\\x07" in shown


def test_output_replaced_by_a_fifo_does_not_hang_the_operator_view(start_agent):
    agent = start_agent()
    job = agent.submit("""
        import os
        os.unlink("../stderr")
        os.mkfifo("../stderr")
        print("done")
    """)
    agent.wait_done(job)
    result = subprocess.run(_job_command(agent, job), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "(not a regular file: not shown)" in result.stdout and "done" in result.stdout


def test_output_replaced_by_a_symlink_is_not_followed(start_agent, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("operator secret\n")
    agent = start_agent()
    job = agent.submit(f"""
        import os
        os.unlink("../stdout")
        os.symlink({str(secret)!r}, "../stdout")
    """)
    agent.wait_done(job)
    result = subprocess.run(_job_command(agent, job), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "operator secret" not in result.stdout


def test_visible_escapes_controls_but_keeps_text():
    assert visible("a\tb\nc") == "a\tb\nc"
    assert visible("\x1b[2J\x00\x7f\x9b") == "\\x1b[2J\\x00\\x7f\\x9b"
    assert visible("héllo ✓") == "héllo ✓"
