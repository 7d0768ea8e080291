"""UUID (AGT-ID-1..3) and python_version (AGT-RUN-4/5) validation, with Hypothesis."""
from __future__ import annotations

import uuid as uuidlib

import grpc
import pytest
from hypothesis import assume, example, given, settings, strategies as st
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from protos import Common_pb2, RunJob_pb2, StageInFile_pb2, errors
from protos.validation import (
    choose_interpreter, dedupe, is_uuid, parse_python_version, parse_uuid, satisfies,
    validate_run_request, validate_stage_request,
)

HEX = "0123456789abcdefABCDEF"
canonical = st.builds(
    lambda parts: "-".join(parts),
    st.tuples(*[st.text(alphabet=HEX, min_size=n, max_size=n) for n in (8, 4, 4, 4, 12)]),
)


@given(canonical)
def test_every_canonical_uuid_is_accepted_in_any_case(value):
    assert parse_uuid(value) == value.lower()
    assert parse_uuid(value.upper()) == parse_uuid(value.lower())


@given(st.uuids())
def test_python_uuids_round_trip(u):
    assert parse_uuid(str(u).upper()) == str(u)


@pytest.mark.parametrize("bad", [
    "", " ", "../x", "/etc/passwd", "a" * 36, "0" * 35, "0" * 37,
    "00000000-0000-0000-0000-00000000000", "00000000-0000-0000-0000-0000000000000",
    "00000000-0000-0000-0000-000000000000\n", "\n00000000-0000-0000-0000-000000000000",
    " 00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-00000000000g",
    "00000000000000000000000000000000", "{00000000-0000-0000-0000-000000000000}",
    "urn:uuid:00000000-0000-0000-0000-000000000000", "00000000_0000_0000_0000_000000000000",
    "0000000-00000-0000-0000-000000000000", "00000000-0000-0000-0000-00000000000\x00",
    "٠٠٠٠٠٠٠٠-0000-0000-0000-000000000000",  # Arabic-Indic digits
    "００000000-0000-0000-0000-000000000000",  # full-width digits
    "../../../../../../../../../../etc/pass", None, 12, b"00000000-0000-0000-0000-000000000000",
])
def test_malformed_uuids_are_rejected_with_the_value_named(bad):
    assert not is_uuid(bad)
    with pytest.raises(errors.InvalidArgument) as info:
        parse_uuid(bad, "job.uuid")
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "job.uuid" in info.value.message and repr(bad)[:20] in info.value.message


@given(canonical, st.integers(0, 35), st.characters(blacklist_characters=HEX + "-"))
def test_one_bad_character_anywhere_is_rejected(value, pos, ch):
    bad = value[:pos] + ch + value[pos + 1:]
    assert not is_uuid(bad)


@given(canonical, st.text(min_size=1, max_size=3))
def test_extra_characters_are_rejected(value, extra):
    assert not is_uuid(value + extra) and not is_uuid(extra + value)


@given(st.text(max_size=60))
def test_arbitrary_text_is_accepted_only_in_canonical_form(text):
    if is_uuid(text):
        assert str(uuidlib.UUID(text)) == text.lower() and len(text) == 36


# --- python_version ---------------------------------------------------------------------

VERSIONS = ["2.7.18", "3.8.10", "3.9.18", "3.10.13", "3.11.0", "3.11.7", "3.12.1", "3.13.0", "4.0.0"]
versions = st.tuples(st.integers(2, 4), st.integers(0, 14), st.integers(0, 20)).map(lambda t: "%d.%d.%d" % t)


@pytest.mark.parametrize("text,matching", [
    ("", ["3.8.10", "3.9.18", "3.10.13", "3.11.0", "3.11.7", "3.12.1", "3.13.0"]),
    ("   ", ["3.8.10", "3.9.18", "3.10.13", "3.11.0", "3.11.7", "3.12.1", "3.13.0"]),
    (",", ["3.8.10", "3.9.18", "3.10.13", "3.11.0", "3.11.7", "3.12.1", "3.13.0"]),
    ("3", ["3.8.10", "3.9.18", "3.10.13", "3.11.0", "3.11.7", "3.12.1", "3.13.0"]),
    ("3.11", ["3.11.0", "3.11.7"]),
    ("3.11.7", ["3.11.7"]),
    ("2", ["2.7.18"]),
    (">=3.10,<3.13", ["3.10.13", "3.11.0", "3.11.7", "3.12.1"]),
    ("==3.11.*", ["3.11.0", "3.11.7"]),
    ("~=3.11.1", ["3.11.7"]),
    ("!=3.11.*", ["2.7.18", "3.8.10", "3.9.18", "3.10.13", "3.12.1", "3.13.0", "4.0.0"]),
    (">=4", ["4.0.0"]),
    ("===3.12.1", ["3.12.1"]),
])
def test_python_version_meaning(text, matching):
    req = parse_python_version(text)
    assert [v for v in VERSIONS if req.matches(v)] == matching


@pytest.mark.parametrize("bad", [
    "3.x", "python3", ">=", ">=3.10;<3.13", "3.11.7.1", "3..11", "=3.11", "=>3.10", "~=3",
    ">=3.10 <3.13", "latest", "3.11-", "*", "٣.١١", "3.11\x00", "3 .11",
])
def test_malformed_python_version_is_invalid_argument_naming_the_value(bad):
    with pytest.raises(errors.InvalidArgument) as info:
        parse_python_version(bad)
    assert repr(bad)[1:-1][:10] in info.value.message
    assert info.value.requirement == "AGT-RUN-4"


@given(st.text(alphabet="0123456789.,<>=!~* abc", max_size=20), versions)
@settings(max_examples=300)
def test_every_specifier_packaging_accepts_keeps_its_meaning(text, version):
    try:
        spec = SpecifierSet(text)
    except InvalidSpecifier:
        bare = text.strip()
        if bare and all(p.isdigit() and p.isascii() for p in bare.split(".")) and bare.count(".") <= 2:
            return  # a bare release, tested below
        if bare.strip(",").strip() == "":
            return
        with pytest.raises(errors.InvalidArgument):
            parse_python_version(text)
        return
    req = parse_python_version(text)
    if len(spec) == 0:
        assert req.matches(version) == (Version(version).major == 3)
    else:
        assert req.matches(version) == spec.contains(version, prereleases=False)


@given(st.lists(st.integers(0, 30), min_size=1, max_size=3), versions)
def test_bare_releases_are_prefixes(parts, version):
    bare = ".".join(map(str, parts))
    v = Version(version).release
    expected = tuple(v[: len(parts)]) == tuple(parts)
    assert parse_python_version(bare).matches(version) == expected


@given(st.sampled_from(["3", "3.13", ">=3.12", "", "==3.13.*", "~=3.13.0"]),
       st.sampled_from(["3.13.0a1", "3.13.0b2", "3.13.0rc1", "3.13.0.dev1", "3.14.0a4"]))
def test_pre_releases_never_match(text, pre):
    assert not parse_python_version(text).matches(pre)


def test_explicit_prerelease_specifier_still_excludes_prereleases():
    assert not parse_python_version(">=3.13.0a1").matches("3.13.0a2")
    assert parse_python_version(">=3.13.0a1").matches("3.13.0")


def test_requirements_are_anded_and_choice_is_newest():
    reqs = [parse_python_version(">=3.9"), parse_python_version("<3.12")]
    assert satisfies("3.11.7", reqs) and not satisfies("3.12.1", reqs)
    assert choose_interpreter(reqs, VERSIONS) == "3.11.7"
    assert choose_interpreter([], VERSIONS) == "3.13.0"
    assert choose_interpreter([parse_python_version("3.14")], VERSIONS) is None
    assert choose_interpreter([], ["3.13.0rc1", "3.12.1"]) == "3.12.1"
    # Order of discovery does not change the choice (deterministic, AGT-RUN-5).
    assert choose_interpreter(reqs, list(reversed(VERSIONS))) == "3.11.7"


# --- whole requests ---------------------------------------------------------------------

U1 = "0f8fad5b-d9cb-469f-a165-70867728950e"
U2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def test_stage_request_missing_fields():
    with pytest.raises(errors.InvalidArgument, match="job is missing"):
        validate_stage_request(StageInFile_pb2.StageInFilesRequest())
    with pytest.raises(errors.InvalidArgument, match="job.uuid is missing"):
        validate_stage_request(StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId()))
    req = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=U1), files=[Common_pb2.FileId()])
    with pytest.raises(errors.InvalidArgument, match=r"files\[0\].uuid is missing"):
        validate_stage_request(req)


def test_stage_request_normalises_case_and_keeps_duplicates():
    req = StageInFile_pb2.StageInFilesRequest(
        job=Common_pb2.JobId(uuid=U1.upper()),
        files=[Common_pb2.FileId(uuid=U2.upper()), Common_pb2.FileId(uuid=U2)])
    parsed = validate_stage_request(req)
    assert parsed.job == U1 and parsed.files == (U2, U2)
    assert dedupe(parsed.files) == [U2]


def test_run_request_requirement_texts_and_bad_file():
    req = RunJob_pb2.RunJobRequest(
        job=Common_pb2.JobId(uuid=U1),
        requirements=[RunJob_pb2.JobRequirement(), RunJob_pb2.JobRequirement(python_version="3.11")],
        files=[Common_pb2.FileId(uuid=U2)])
    parsed = validate_run_request(req)
    assert parsed.requirement_texts == ("", "3.11") and parsed.files == (U2,)
    req.files.add(uuid="../etc/passwd")
    with pytest.raises(errors.InvalidArgument, match=r"files\[1\].uuid"):
        validate_run_request(req)
    bad = RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=U1),
                                   requirements=[RunJob_pb2.JobRequirement(python_version="3.x")])
    with pytest.raises(errors.InvalidArgument, match="python_version"):
        validate_run_request(bad)


@given(st.lists(st.sampled_from([U1, U2, U1.upper()]), max_size=8))
def test_dedupe_keeps_first_appearance_order(items):
    out = dedupe(items)
    assert len(out) == len(set(out))
    assert out == sorted(set(items), key=items.index)


def test_huge_malformed_python_version_gives_a_short_message():
    with pytest.raises(errors.InvalidArgument) as info:
        parse_python_version("x" * 4_000_000)
    assert len(info.value.message) < 300 and "xxxx" in info.value.message
