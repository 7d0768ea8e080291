"""`python -m fakes.broken NAME --delay SECONDS`: the agents whose defect talks of a delay take it as an option."""
from __future__ import annotations

import sys
import time
import uuid

import pytest

from fakes.broken import CATALOGUE
from fakes.broken.__main__ import DELAY_ATTRIBUTES, build_parser, delay_attribute, main, with_delay
from protos.client import AgentClient
from protos.launcher import AgentProcess
from protos.states import JobState


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "3601", ""])
def test_malformed_delays_are_refused_naming_the_value(value, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["ReportsDoneLate", "--delay", value])
    assert info.value.code == 2
    assert f"must be a number of seconds in (0, 3600], got {value!r}" in capsys.readouterr().err


def test_an_agent_without_a_delay_refuses_the_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["ExceedsSlots", "--source", str(tmp_path), "--delay", "2"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "ExceedsSlots has no delay" in err and "ReportsDoneLate" in err


def test_with_delay_keeps_the_agent_and_sets_only_its_delay():
    takes = {name: delay_attribute(cls) for name, cls in CATALOGUE.items() if delay_attribute(cls)}
    assert "ReportsDoneLate" in takes and set(takes.values()) <= set(DELAY_ATTRIBUTES)
    for name, attribute in takes.items():
        cls = CATALOGUE[name]
        changed = with_delay(cls, 0.25)
        assert issubclass(changed, cls) and changed.__name__ == name and changed.__doc__ == cls.__doc__
        assert getattr(changed, attribute) == 0.25 and getattr(cls, attribute) != 0.25
    with pytest.raises(ValueError, match="ExceedsSlots has no delay"):
        with_delay(CATALOGUE["ExceedsSlots"], 1)


def _done_late(tmp_path, delay: str) -> JobState:
    """The first DONE, or the last state, of a job polled from 0.5 s to 2.5 s after its last
    statement ran, on ReportsDoneLate --delay `delay` (the agent's own delay is 3 s)."""
    source, marker = tmp_path / f"src-{delay}", tmp_path / f"ended-{delay}"
    source.mkdir()
    script, job = str(uuid.uuid4()), str(uuid.uuid4())
    (source / script).write_text(f"open({str(marker)!r}, 'w').close()\n")
    agent = AgentProcess(lambda listen: [sys.executable, "-m", "fakes.broken", "ReportsDoneLate", "--listen", listen,
                                         "--source", str(source), "--no-path-pythons", "--delay", delay])
    with agent, AgentClient.connect(agent.address, timeout=10) as client:
        client.submit(job, [script])
        end = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(0.5)
        end = time.monotonic() + 2.0
        while (state := client.status(job)) is not JobState.DONE and time.monotonic() < end:
            time.sleep(0.05)
        return state


def test_the_delay_reaches_the_served_agent(tmp_path):
    assert _done_late(tmp_path, "60") is JobState.RUN      # still "running" long after it ended
    assert _done_late(tmp_path, "0.05") is JobState.DONE   # within 2.5 s: shorter than the default 3 s
