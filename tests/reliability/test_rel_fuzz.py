"""A short run of bench/fuzz.py's fuzzer against the in-process agent (AGT-ERR-1/2), the inputs
that once broke it, and proof that the fuzzer catches an agent that answers badly."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from fuzz import Fuzzer, check_sentinels, deep, expected_codes, ld, make_sentinels  # noqa: E402

from fakes.broken.surface import OkForUnparseableBytes  # noqa: E402
from reliability_helpers import code_of, new_id  # noqa: E402

# Found by `python bench/fuzz.py --inputs 2000`: a job uuid of more than 64 bytes that is not
# UTF-8 (proto2 hands it over as bytes) made the RPC log line fail: UNKNOWN instead of a status.
REGRESSIONS = [
    ("StageInFiles", ld(1, ld(1, b"\xff" * 65))),
    ("RunJob", ld(1, ld(1, b"\x0a\xbe" * 40)) + ld(3, ld(1, b"\xff"))),
    ("RunJob", ld(1, ld(1, new_id().encode())) + ld(2, ld(1, b"\xff\xfe" * 50))),
    ("StageInFiles", b"\x0b" * 5000 + b"\x0c" * 5000),   # groups nested 5000 deep
    ("RunJob", b"\x0a\xff\xff\xff\xff\x0f"),             # a length of 4 GiB
]


def test_regression_inputs_get_proper_statuses(start_agent):
    agent = start_agent(log_rpcs=True)
    fuzzer = Fuzzer(agent.new_channel(), timeout=30)
    for method, data in REGRESSIONS:
        assert fuzzer.send(method, data) == "ok", fuzzer.findings


def test_short_fuzz_run_finds_nothing_and_touches_no_other_job(start_agent):
    agent = start_agent(log_rpcs=True)
    sentinels = make_sentinels(agent.client, agent.source)
    fuzzer = Fuzzer(agent.new_channel(), timeout=30)
    fuzzer.run(400, seed_value=20261127)
    assert fuzzer.inputs == 400
    assert dict(fuzzer.verdicts) == {"ok": 400}, fuzzer.findings
    assert check_sentinels(agent.client, sentinels, submit=True) == []
    assert code_of(agent.client.stage_in, new_id(), []) == "OK"  # still serving


def test_fuzzer_catches_an_agent_that_answers_unparseable_bytes_with_ok(start_agent):
    agent = start_agent(server_class=OkForUnparseableBytes)
    fuzzer = Fuzzer(agent.new_channel(), timeout=30)
    fuzzer.run(150, seed_value=3)
    assert fuzzer.verdicts["wrong status"] > 0, dict(fuzzer.verdicts)
    assert any("OK (allowed ['INTERNAL', 'INVALID_ARGUMENT'])" in f for f in fuzzer.findings)


@pytest.mark.parametrize("size, code", [(4 * 1024 * 1024 + 1, "RESOURCE_EXHAUSTED"), (100, "INVALID_ARGUMENT")])
def test_expected_codes_follow_the_protocol_layer(size, code):
    data = b"\x0a" + b"\xff" * (size - 1)
    assert code in expected_codes("RunJob", data, 4 * 1024 * 1024)


def test_deep_strategy_nests_beyond_the_parser_limit():
    from hypothesis import given, settings

    seen = []

    @settings(max_examples=30, database=None, deadline=None)
    @given(deep("RunJob"))
    def collect(data):
        seen.append(data)

    collect()
    assert max(len(d) for d in seen) > 200
