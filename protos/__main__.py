"""`python -m protos`: print the protocol's summary (service, methods, messages, states, requirements)."""
from __future__ import annotations

from protos import AgentService_pb2, PROTOCOL_VERSION
from protos.requirements import REQUIREMENTS, Level
from protos.states import TRANSITIONS


def summary() -> str:
    service = AgentService_pb2.DESCRIPTOR.services_by_name["Agent"]
    lines = [f"Agent protocol {PROTOCOL_VERSION}: service {service.full_name}"]
    for m in service.methods:
        lines.append(f"  /{service.full_name}/{m.name}({m.input_type.full_name}) -> {m.output_type.full_name}")
    lines.append("Job states: WAIT -> RUN -> DONE (never backwards); transitions:")
    for (state, event), (new, reason) in TRANSITIONS.items():
        why = f" ({reason.value})" if reason else ""
        lines.append(f"  {state.name:<4} --{event.value}--> {new.name}{why}")
    musts = sum(r.level is Level.MUST for r in REQUIREMENTS.values())
    lines.append(f"Requirements: {len(REQUIREMENTS)} ({musts} MUST), see docs/SPEC.md")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary())
