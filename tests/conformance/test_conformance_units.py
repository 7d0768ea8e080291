"""The suite's own parts: registry coverage, raw wire codec, fixed input lists, expected-failures, verdicts."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from conformance import expected, report, wire
from conformance.options import OptionError, validate
from conformance.session import registry
from conformance.suite import test_ids, test_run
from conformance.violations import Violation, also, find_violation, violation
from protos import RunJob_pb2, StageInFile_pb2
from protos.requirements import ALL_REQUIREMENTS, REQUIREMENTS
from protos.validation import is_uuid, parse_python_version

ROOT = Path(__file__).resolve().parents[2]


def test_every_requirement_is_covered_by_a_suite_test():
    covered = {rid for cov in registry().values() for rid in cov.ids}
    assert covered == set(REQUIREMENTS), sorted(set(REQUIREMENTS) - covered)


def test_registry_matches_the_markers_on_the_tests():
    import importlib

    for key, cov in registry().items():
        module, name = key.split("::")
        fn = getattr(importlib.import_module(f"conformance.suite.{module}"), name)
        marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "requirement"]
        assert len(marks) == 1 and tuple(marks[0].args) == cov.ids, key


def test_spec_table_ids_are_the_registry_ids():
    spec = ROOT / "docs" / "SPEC.md"
    ids = set(re.findall(r"^\| (AGT-[A-Z]+-\d+) \|", spec.read_text("utf-8"), re.M))
    assert ids == set(ALL_REQUIREMENTS)  # the v1 table and the extension's (profile ext)


def test_unparseable_blobs_do_not_parse():
    for name, blob in wire.UNPARSEABLE.items():
        for cls in (RunJob_pb2.RunJobRequest, StageInFile_pb2.StageInFilesRequest):
            with pytest.raises(Exception):
                cls.FromString(blob)
        with pytest.raises(wire.WireError):
            wire.parse(blob)


def test_fixed_input_lists_agree_with_the_contract():
    for text in test_run.MALFORMED_VERSIONS:
        with pytest.raises(Exception):
            parse_python_version(text)
    for text in test_run.UNSATISFIABLE + test_run.ANY_PYTHON3:
        parse_python_version(text)
    assert all(parse_python_version(t).matches("3.11.7") for t in test_run.ANY_PYTHON3)
    assert not any(parse_python_version(t).matches(v) for t in test_run.UNSATISFIABLE
                   for v in ("2.7.18", "3.8.0", "3.13.1", "4.0.0"))
    for name, bad in test_ids.malformed_uuids("0123abcd-0123-4567-89ab-0123456789ab").items():
        assert not is_uuid(bad), name


uuids = st.uuids().map(str)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(job=uuids, files=st.lists(uuids, max_size=5), reqs=st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=3))
def test_hand_encoding_matches_protobuf(job, files, reqs):
    run = RunJob_pb2.RunJobRequest.FromString(wire.run_request(job, files, reqs))
    assert run.job.uuid == job and [f.uuid for f in run.files] == files
    assert [r.python_version if r.HasField("python_version") else None for r in run.requirements] == reqs
    stage = StageInFile_pb2.StageInFilesRequest.FromString(wire.stage_request(job, files))
    assert stage.job.uuid == job and [f.uuid for f in stage.files] == files
    ok = StageInFile_pb2.StageInFilesResponse(success_files=[StageInFile_pb2.StagedFile(file={"uuid": f}) for f in files])
    assert wire.decode_stage_response(ok.SerializeToString()) == (files, "")


def test_decoders_fail_on_missing_required_fields():
    assert wire.decode_run_response(b"")[0] is None                    # code absent (proto3-style WAIT)
    assert wire.decode_run_response(b"\x08\x03")[0] is None            # code 3 is no ResponseCode
    assert wire.decode_run_response(b"\x10\x01")[0] is None            # code in field 2
    assert wire.decode_run_response(b"\x08\x00") == (0, "")
    assert wire.decode_stage_response(b"\x0a\x00")[0] is None          # StagedFile without file
    assert wire.decode_stage_response(b"\x0a\x02\x0a\x00")[0] is None  # FileId without uuid
    assert wire.decode_stage_response(b"\x0a\x0f")[0] is None          # truncated


def test_violation_names_ids_text_and_details():
    with also("AGT-DUR-1"):
        v = violation("AGT-STATE-1", "state went backwards", "job x\ntimeline: RUN -> WAIT")
    assert v.ids == ("AGT-STATE-1", "AGT-DUR-1")
    text = str(v)
    assert REQUIREMENTS["AGT-STATE-1"].text in text and "timeline: RUN -> WAIT" in text
    try:
        try:
            raise v
        except Violation as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        assert find_violation(outer) is v


def test_expected_failures_round_trip_and_errors(tmp_path):
    text = expected.render([("AGT-RUN-3", "the message does not name"), ("AGT-ID-1", "malformed")])
    parsed = expected.parse(text)
    assert parsed == {"AGT-ID-1": ["malformed"], "AGT-RUN-3": ["the message does not name"]}
    assert expected.matches(parsed, "AGT-RUN-3", "the message does not name the unstaged UUIDs")
    assert not expected.matches(parsed, "AGT-RUN-3", "other message")
    with pytest.raises(expected.ExpectedError, match=r"x\.txt:2: 'AGT-NOPE-1'"):
        expected.parse("# c\nAGT-NOPE-1  # x\n", "x.txt")


def test_verdicts_per_requirement():
    recs = [report.TestRecord("a", ["AGT-ID-1"], "passed"),
            report.TestRecord("b", ["AGT-ID-1", "AGT-ID-2"], "failed", ["AGT-ID-1"], "bad uuid"),
            report.TestRecord("c", ["AGT-DUR-1"], "skipped", skip_reason="needs --restart-cmd"),
            report.TestRecord("d", ["AGT-ERR-1"], "error", message="AgentUnavailable: gone"),
            report.TestRecord("e", ["AGT-WIRE-1"], "failed", ["AGT-WIRE-2"], "no code")]
    v = report.verdicts(recs, "must")
    assert v["AGT-ID-1"].outcome == "FAIL" and v["AGT-WIRE-2"].outcome == "FAIL"
    assert v["AGT-ID-2"].outcome == "SKIP" and "not reached" in v["AGT-ID-2"].reason
    assert v["AGT-DUR-1"].outcome == "SKIP" and v["AGT-DUR-1"].reason == "c skipped: needs --restart-cmd"
    assert v["AGT-ERR-1"].outcome == "ERROR"
    assert v["AGT-STAGE-5"].outcome == "SKIP" and "--level should" in v["AGT-STAGE-5"].reason
    assert set(report.failing(v, "must")) == {"AGT-ID-1", "AGT-WIRE-2", "AGT-ERR-1"}
    assert report.summary_lines(v, "must")[0].endswith("NOT conformant")


@pytest.mark.parametrize("raw, message", [
    ({"target": "localhost"}, "expected HOST:PORT"),
    ({"target": "h:0", "source_dir": "."}, "port in 1..65535"),
    ({"target": "h:1"}, "needs --source-dir or --put-cmd"),
    ({"target": "h:1", "source_dir": "/nonexistent-dir"}, "not an existing directory"),
    ({"target": "h:1", "put_cmd": "cp {path} {oops}"}, "bad placeholder"),
    ({"target": "h:1", "put_cmd": "cp x y"}, "no {path} placeholder"),
    ({"slots": "0"}, "from 1 to 1024"), ({"slots": "two"}, "from 1 to 1024"),
    ({"time_scale": "nan"}, "from 0.1 to 100"), ({"time_scale": "0"}, "from 0.1 to 100"),
    ({"level": "may"}, "expected must or should"),
    ({"python_version": ">=>3"}, "--python-version '>=>3'"),
    ({"agent_cmd": "agent --port 5"}, "no {listen} placeholder"),
    ({"agent_cmd": "a {listen}", "target": "h:1"}, "not both"),
    ({"update_expected": True}, "needs --expected-failures"),
    ({"max_request_bytes": "12"}, "(1024)"), ({"max_request_bytes": "4M"}, "'4MiB'"),
    ({"tls_cert": __file__}, "go together"),
])
def test_bad_options_name_the_value(raw, message):
    with pytest.raises(OptionError, match=re.escape(message)):
        validate(raw)
