"""AGT-ERR-3: no UUID, file content or requirement makes the agent read or write outside its
own directories, checked against the whole file tree around the agent."""
from __future__ import annotations

import os
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protos.states import JobState
from protos.validation import is_uuid
from reliability_helpers import code_of, new_id

NASTY_PARTS = ["..", "/", "\\", ".", "%2e", "%2f", "\x00", "~", "*", "?", "\n", "etc", "passwd",
               "/etc/passwd", "..%2f", "\u2025", "\uff0e", "con", "aux", ":", "$HOME", "`id`", "'", '"']


def _tree(root) -> dict[str, tuple]:
    """Every path under root with (kind, size, mtime_ns), symlinks not followed."""
    seen = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st_ = os.lstat(path)
            seen[os.path.relpath(path, root)] = (st_.st_mode >> 12, st_.st_size, st_.st_mtime_ns)
    return seen


def _traversal_text():
    valid = st.uuids().map(str)
    glued = st.lists(st.sampled_from(NASTY_PARTS), min_size=1, max_size=6).map("".join)
    around = st.tuples(valid, st.sampled_from(NASTY_PARTS), st.booleans()).map(
        lambda t: t[1] + t[0] if t[2] else t[0] + t[1])
    return st.one_of(glued, around, st.text(max_size=40), valid.map(lambda u: "../" + u))


def test_traversal_ids_never_touch_anything_outside(start_agent, tmp_path):
    agent = start_agent()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("do not read\n")
    script = agent.put("print('ok')\n")
    assert agent.client.stage_in(new_id(), [script]) == [script]  # the agent's dirs exist
    watched = {p: _tree(p) for p in (outside, agent.source)}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(job=_traversal_text(), file=_traversal_text(), version=st.sampled_from(
        ["../../x", "3; rm -rf /", "$(id)", ">=3", "", "\x00"]))
    def probe(job, file, version):
        for call in ((agent.client.stage_in, job, [file]), (agent.client.stage_in, new_id(), [file, script]),
                     (agent.client.run, job, [file], version), (agent.client.run, new_id(), [file], version)):
            code = code_of(*call)
            ids = [call[1], *call[2]]
            if not all(is_uuid(i) for i in ids):
                assert code == "INVALID_ARGUMENT", (call, code)

    probe()
    assert {p: _tree(p) for p in watched} == watched, "the agent wrote into its source or outside"
    for kind in ("jobs", "cache"):
        names = os.listdir(agent.state / kind)
        assert all(is_uuid(n) and n == n.lower() for n in names), (kind, names)


def test_symlinked_source_entries_are_never_followed_nor_block(start_agent, tmp_path):
    agent = start_agent()
    secret = tmp_path / "secret"
    secret.write_text("secret\n")
    entries = {}
    for kind in ("link_to_file", "link_to_dir", "link_to_dev_zero", "fifo", "directory", "dangling",
                 "link_to_fifo", "socket"):
        name = str(uuid.uuid4())
        path = agent.source / name
        if kind == "link_to_file":
            os.symlink(secret, path)
        elif kind == "link_to_dir":
            os.symlink(tmp_path, path)
        elif kind == "link_to_dev_zero":
            os.symlink("/dev/zero", path)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "directory":
            path.mkdir()
        elif kind == "dangling":
            os.symlink(tmp_path / "nothing", path)
        elif kind == "link_to_fifo":
            os.mkfifo(tmp_path / "fifo")
            os.symlink(tmp_path / "fifo", path)
        else:
            import socket
            import tempfile
            short = tempfile.mkdtemp(prefix="s", dir="/tmp")  # AF_UNIX paths are short
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(f"{short}/s")
            sock.close()
            os.rename(f"{short}/s", path)
            os.rmdir(short)
        entries[kind] = name
    good = agent.put("print(open(0).read() == '')\n")
    job = new_id()
    staged = agent.client.stage_in(job, [*entries.values(), good])
    assert staged == [good], {k: v in staged for k, v in entries.items()}
    assert sorted(os.listdir(agent.workdir(job))) == [good]
    agent.client.run(job, [good])
    assert agent.wait_done(job).final is JobState.DONE
    assert agent.row(job).reason == "succeeded"
