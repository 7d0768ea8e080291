"""The suite against every broken agent of fakes.broken: it must fail each on the IDs it declares."""
from __future__ import annotations

import pytest

from _conformance_runs import PRIMARY, broken_args, run_inprocess
from fakes.broken import CATALOGUE
from protos.requirements import EXT_REQUIREMENTS, REQUIREMENTS

# The v1 defects; those of the extension (AGT-EXT-*) are shown by tests/reference_agent/test_agent_ext_defects.py.
V1_AGENTS = sorted(n for n, c in CATALOGUE.items() if not set(c.violates) & set(EXT_REQUIREMENTS))

# MUST failures besides the declared ones that a defect explains (it breaks both by nature).
EXPLAINED: dict[str, set[str]] = {}


def _check(name: str, run, selected: set[str] | None) -> None:
    declared = set(CATALOGUE[name].violates)
    failed = run.failed()
    assert run.report is not None, f"{name}: no report; exit code {run.code}"
    assert run.code == 1, f"{name}: exit code {run.code}, expected 1 (a MUST failed); failed {sorted(failed)}"
    assert declared <= failed, (f"{name} declares {sorted(declared)} but the suite failed {sorted(failed)}\n"
                                f"{ {k: v for k, v in run.report['requirements'].items() if k in declared} }")
    spurious = {rid for rid in failed - declared - EXPLAINED.get(name, set())
                if REQUIREMENTS[rid].level.value == "MUST"}
    assert not spurious, f"{name}: MUST failures the defect does not explain: {sorted(spurious)}"


@pytest.mark.parametrize("name", V1_AGENTS)
def test_suite_fails_broken_agent_on_declared_ids(name, tmp_path):
    """Default run: only the primary tests of the declared IDs (or the tests the class names in `shows_in`)."""
    cls = CATALOGUE[name]
    tests = list(cls.shows_in) or sorted({t for rid in cls.violates for t in PRIMARY[rid]})
    run = run_inprocess(broken_args(name) + ["-k", " or ".join(tests)], tmp_path)
    _check(name, run, set(tests))


@pytest.mark.slow
@pytest.mark.parametrize("name", V1_AGENTS)
def test_full_suite_fails_broken_agent_only_where_explained(name, tmp_path):
    run = run_inprocess(broken_args(name), tmp_path)
    _check(name, run, None)


def test_every_declared_id_has_a_primary_test():
    from conformance.session import registry

    reg = registry()
    names = {key.split("::")[1]: cov for key, cov in reg.items()}
    for rid, tests in PRIMARY.items():
        for test in tests:
            assert test in names, f"PRIMARY names {test}, which is no suite test"
            assert rid in names[test].ids, f"{test} does not declare {rid}"
    declared = {rid for name in V1_AGENTS for rid in CATALOGUE[name].violates}
    assert declared <= set(PRIMARY), sorted(declared - set(PRIMARY))
    for cls in CATALOGUE.values():
        assert set(cls.shows_in) <= set(names), f"{cls.__name__}.shows_in names no suite test"


@pytest.mark.parametrize("name", ["AcceptsMismatchedRepeat", "ListsOnlyNewlyStaged", "CaseSensitiveUuids"])
def test_state_machine_alone_catches_protocol_defects(name, tmp_path):
    """The Hypothesis state machine is no formality: on its own it fails these agents on their IDs."""
    run = run_inprocess(broken_args(name) + ["-k", "test_random_interleavings_match_the_model"], tmp_path)
    assert run.code == 1 and set(CATALOGUE[name].violates) <= run.failed(), run.report["requirements"]
