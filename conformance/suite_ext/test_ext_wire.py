"""AGT-EXT-1/2: the AgentExtensions service on the agent's port, its capabilities, and UNIMPLEMENTED for
exactly the methods of the extensions it does not list."""
from __future__ import annotations

import grpc

from conformance.suite_ext import _ext
from conformance.violations import AgentUnavailable, covers, expect
from protos import AgentExtensions_pb2 as ext_pb2

KNOWN = ("outcome", "cancel", "watch")
UNKNOWN_ID_RULE = {"outcome": "AGT-EXT-3", "cancel": "AGT-EXT-5", "watch": "AGT-EXT-7"}
UNKNOWN_JOB = "00000000-0000-4000-8000-00000000e0e1"


def _watch_code(env, job: str) -> grpc.StatusCode:
    watch = _ext.Watch(env, [job], env.timing(5.0)).start()
    watch.wait(env.timing(6.0))
    watch.cancel()
    return watch.code


@covers("AGT-EXT-1", "AGT-EXT-2", needs=("ext",))
def test_capabilities_list_what_is_served(env):
    code, details, raw = env.target.call(_ext.SERVICE + "GetCapabilities", b"")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        raise AgentUnavailable(f"GetCapabilities -> {code.name}: {details}")
    expect("AGT-EXT-2", code is grpc.StatusCode.OK,
           "GetCapabilities of an agent with the AgentExtensions service did not return OK", f"{code.name} {details!r}")
    listed = list(_ext.parse("AGT-EXT-2", ext_pb2.Capabilities, raw, "Capabilities").extensions)
    expect("AGT-EXT-2", set(listed) <= set(KNOWN) and len(listed) == len(set(listed)),
           "GetCapabilities lists something other than outcome, cancel and watch (each once)", f"listed: {listed}")
    # the v1 service answers on the same port, next to the extension
    v1 = env.stage_call(env.new_id(), [])
    env.expect_code("AGT-EXT-1", v1, grpc.StatusCode.OK, "the v1 service does not answer next to AgentExtensions")
    for capability in KNOWN:
        if capability == "watch":
            got = _watch_code(env, UNKNOWN_JOB)
        else:
            got = env.target.call(_ext.SERVICE + _ext.METHOD[capability], _ext.job_id(UNKNOWN_JOB))[0]
        if got in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and capability != "watch":
            raise AgentUnavailable(f"{_ext.METHOD[capability]} -> {got.name}")
        unimplemented = got is grpc.StatusCode.UNIMPLEMENTED
        if capability in listed:
            expect("AGT-EXT-2", not unimplemented, f"a listed extension's method answers UNIMPLEMENTED",
                   f"'{capability}' is listed; {_ext.METHOD[capability]}({UNKNOWN_JOB}) answered {got.name}")
            expect(UNKNOWN_ID_RULE[capability], got is grpc.StatusCode.NOT_FOUND, "a never-submitted job id is not NOT_FOUND",
                   f"{_ext.METHOD[capability]}({UNKNOWN_JOB}) answered {got.name if got else 'a stream that ended OK'}")
        else:
            expect("AGT-EXT-2", unimplemented, "a method of an extension not listed does not answer UNIMPLEMENTED",
                   f"'{capability}' is not listed ({listed}); {_ext.METHOD[capability]} answered "
                   f"{got.name if got else None}")
