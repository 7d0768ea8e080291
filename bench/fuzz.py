"""Fuzz: Hypothesis-made raw request bytes for both Agent methods, each answer checked (AGT-ERR-1/2)."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from protos import AgentService_pb2, RunJob_pb2, StageInFile_pb2, validation  # noqa: E402
from protos.errors import ProtocolError  # noqa: E402

SERVICE = AgentService_pb2.DESCRIPTOR.services_by_name["Agent"]
METHODS = {"StageInFiles": (StageInFile_pb2.StageInFilesRequest, StageInFile_pb2.StageInFilesResponse,
                            validation.validate_stage_request),
           "RunJob": (RunJob_pb2.RunJobRequest, RunJob_pb2.RunJobResponse, validation.validate_run_request)}
# What may come back for a request that parses and passes the protocol layer's own checks.
STATEFUL = {"StageInFiles": {"OK", "FAILED_PRECONDITION"},
            "RunJob": {"OK", "FAILED_PRECONDITION", "ALREADY_EXISTS", "INVALID_ARGUMENT"}}
DEFAULT_LIMIT = 4 * 1024 * 1024
NASTY = ["", "../x", "../../etc/passwd", "/etc/passwd", "0" * 36, "x" * 37, "\x00", "\ufffd",
         "00000000-0000-0000-0000-000000000000", "3", ">=3.9,<4", "===3.11", "~=", "3.11.*", "\u00e9"]


# --- wire encoding by hand, so that anything can be built ------------------------------------
def varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def ld(field: int, payload: bytes) -> bytes:
    return key(field, 2) + varint(len(payload)) + payload


text_ish = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()),
                     st.sampled_from(NASTY), st.text(max_size=40))
raw_string = st.one_of(text_ish.map(lambda t: t.encode("utf-8", "surrogatepass")),
                       st.binary(max_size=40),                                    # invalid UTF-8 mostly
                       st.uuids().map(lambda u: str(u).encode()[:-1] + b"\xff"))  # almost a UUID


# Strategies are built once, here: building them inside a draw makes Hypothesis validate them
# again for every example, which cost 10x the generation time.
_tenth = st.integers(0, 9)
_op, _position, _byte, _insert = st.integers(0, 5), st.integers(0, 2 ** 16), st.integers(0, 255), st.binary(min_size=1, max_size=8)
_small = st.integers(0, 6)
_payloads = st.one_of(st.integers(0, 2 ** 64 - 1).map(lambda n: (0, varint(n))),
                      st.binary(min_size=8, max_size=8).map(lambda b: (1, b)),
                      st.binary(max_size=20).map(lambda b: (2, varint(len(b)) + b)),
                      st.binary(min_size=4, max_size=4).map(lambda b: (5, b)))
unknown_field = st.tuples(st.integers(1, 2 ** 29 - 1), _payloads).map(lambda t: key(t[0], t[1][0]) + t[1][1])
_odd_fields = st.one_of(unknown_field, st.sampled_from(
    [key(1, 0) + varint(7), key(2, 0) + varint(1), key(3, 5) + b"\0\0\0\0", key(1, 1) + b"\0" * 8]))


def _shuffle(draw, parts: list[bytes]) -> bytes:
    """Join the parts in an order Hypothesis picks (cheaper than st.permutations)."""
    if len(parts) > 1:
        turn = draw(st.integers(0, len(parts) - 1))
        parts = parts[turn:] + parts[:turn]
    return b"".join(parts)


@st.composite
def id_message(draw) -> bytes:
    """A JobId or FileId: usually a uuid string (any bytes), maybe none, maybe unknown fields."""
    parts = [] if draw(_tenth) == 0 else [ld(1, draw(raw_string))]
    if draw(_tenth) == 0:
        parts.append(draw(unknown_field))
    return _shuffle(draw, parts)


_id_message = id_message()


@st.composite
def structured(draw, method: str) -> bytes:
    """A request built field by field: right or wrong types, repeats, unknown fields."""
    parts = []
    if draw(_tenth):
        parts.append(ld(1, draw(_id_message)))
    files_field = 2 if method == "StageInFiles" else 3
    for _ in range(draw(_small)):
        parts.append(ld(files_field, ld(1, draw(_id_message)) if method == "StageInFiles" else draw(_id_message)))
    if method == "RunJob":
        for _ in range(draw(_small) // 2):
            parts.append(ld(2, b"" if draw(_tenth) < 2 else ld(1, draw(raw_string))))
    for _ in range(draw(_small) // 3):
        parts.append(draw(_odd_fields))
    return _shuffle(draw, parts)


@st.composite
def mutated(draw, method: str) -> bytes:
    """A structured request with byte-level damage: flips, cuts, insertions, bad lengths."""
    data = bytearray(draw(structured(method)))
    for _ in range(1 + draw(_small) // 2):
        op, at = draw(_op), draw(_position) % (len(data) + 1)
        if op == 0 and data:
            data[min(at, len(data) - 1)] = draw(_byte)
        elif op == 1:
            del data[at:]
        elif op == 2:
            data[at:at] = draw(_insert)
        elif op == 3:
            data[at:at] = key(1 + draw(_small) % 3, 2) + b"\xff" * (1 + draw(_tenth))  # absurd length
        elif op == 4:
            data += data[at:]
        else:
            data[at:at] = key(draw(_small), 6 + draw(_small) % 2)  # wire types 6 and 7 do not exist
    return bytes(data)


@st.composite
def deep(draw, method: str) -> bytes:
    """Nesting far beyond any parser's recursion limit: groups, or length-delimited in length-delimited."""
    depth = draw(st.integers(1, 5000))
    field = draw(st.integers(1, 20))
    if draw(st.booleans()):
        return key(field, 3) * depth + key(field, 4) * depth
    payload = b""
    for _ in range(min(depth, 300)):
        payload = ld(field, payload)
    return payload


@st.composite
def huge(draw, method: str) -> bytes:
    """Huge repeated fields around the size limit (and a few far above)."""
    count = draw(st.sampled_from([10_000, 50_000, 90_000, 110_000, 400_000]))
    one = ld(2 if method == "StageInFiles" else 3,
             ld(1, ld(1, str(uuid.UUID(int=draw(st.integers(0, 2 ** 128 - 1)))).encode()))
             if method == "StageInFiles" else ld(1, b"0" * 36))
    head = ld(1, ld(1, str(uuid.uuid4()).encode()))
    return head + one * count


def request_bytes(method: str):
    """Mostly small inputs; 1 in 100 huge."""
    return st.integers(0, 99).flatmap(lambda k: _KINDS[method][
        4 if k == 99 else 0 if k < 20 else 1 if k < 30 else 2 if k < 60 else 3])


_KINDS = {m: (st.binary(max_size=300), deep(m), structured(m), mutated(m), huge(m)) for m in METHODS}
_CASES = st.sampled_from(sorted(METHODS)).flatmap(lambda m: st.tuples(st.just(m), request_bytes(m)))


# --- judging an answer -------------------------------------------------------------------------
def expected_codes(method: str, data: bytes, limit: int) -> set[str]:
    """The statuses the protocol allows for these bytes, from the protocol layer itself."""
    request_class, _, validate = METHODS[method]
    if len(data) > limit:
        return {"RESOURCE_EXHAUSTED"}
    try:
        request = request_class.FromString(data)
    except DecodeError:
        return {"INVALID_ARGUMENT", "INTERNAL"}  # AGT-ERR-1
    try:
        validate(request)
    except ProtocolError as exc:
        return {exc.code.name}
    return STATEFUL[method]


def response_ok(method: str, payload: bytes) -> bool:
    """An OK answer parses and carries its required fields (AGT-WIRE-2)."""
    try:
        response = METHODS[method][1].FromString(payload)
    except DecodeError:
        return False
    if method == "RunJob":
        return response.HasField("code") and response.code in (0, 1, 2)
    return all(sf.HasField("file") and sf.file.HasField("uuid") for sf in response.success_files)


class Fuzzer:
    """Sends raw bytes with identity serializers and sorts every answer into a verdict:
    `ok` (a status the protocol allows), `wrong status`, `non-status` (UNKNOWN, or OK without
    its required fields), `transport` (no answer at all: the agent hung or died)."""

    def __init__(self, channel: grpc.Channel, limit: int = DEFAULT_LIMIT, timeout: float = 60.0):
        self.calls = {m: channel.unary_unary(f"/{SERVICE.full_name}/{m}") for m in METHODS}
        self.limit, self.timeout = limit, timeout
        self.inputs = 0
        self.verdicts: Counter = Counter()
        self.codes: Counter = Counter()
        self.findings: list[str] = []
        self.slowest = 0.0

    def send(self, method: str, data: bytes) -> str:
        self.inputs += 1
        start = time.perf_counter()
        try:
            payload, code = self.calls[method](data, timeout=self.timeout), "OK"
        except grpc.RpcError as exc:
            payload, code = None, exc.code().name
        self.slowest = max(self.slowest, time.perf_counter() - start)
        allowed = expected_codes(method, data, self.limit)
        if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
            verdict = "transport"
        elif code == "UNKNOWN" or (code == "OK" and not response_ok(method, payload)):
            verdict = "non-status"
        else:
            verdict = "ok" if code in allowed else "wrong status"
        self.codes[(method, code)] += 1
        self.verdicts[verdict] += 1
        if verdict != "ok" and len(self.findings) < 25:
            self.findings.append(f"{verdict}: {method} {code} (allowed {sorted(allowed)}) for "
                                 f"{len(data)} bytes {data[:48].hex()}{'...' if len(data) > 48 else ''}")
        return verdict

    def run(self, count: int, seed_value: int, alive=lambda: True, every: int = 0, progress=None) -> None:
        """Send `count` Hypothesis-made inputs; call `progress(self)` every `every` inputs."""
        @seed(seed_value)
        @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(_CASES)
        def one(case):
            if self.send(*case) == "transport" and not alive():
                raise SystemExit(f"fuzz: the agent died after {self.inputs} inputs; last: {self.findings[-1]}")
            if every and progress and self.inputs % every == 0:
                progress(self)

        one()


def make_sentinels(client, source: Path) -> dict:
    """Jobs the fuzz must not touch: one DONE, one staged and never submitted."""
    done, staged, script = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    (source / script).write_text("print('sentinel')\n")
    client.stage_in(done, [script])
    client.run(done, [script])
    client.wait_until_done(done, poll_interval=0.05, deadline=60)
    client.stage_in(staged, [script])
    return {"done": done, "staged": staged, "script": script}


def check_sentinels(client, sentinels: dict, submit: bool = False) -> list[str]:
    """Problems with the sentinels: DONE still DONE; the staged job still staged (submitting it
    at the end proves that: RunJob would refuse unstaged files)."""
    from protos.client import AgentCallError

    problems = []
    try:
        if client.status(sentinels["done"]) != 2:
            problems.append("the DONE sentinel is no longer DONE")
        if client.stage_in(sentinels["staged"], []) != []:
            problems.append("the staged sentinel answers oddly")
        if submit:
            client.run(sentinels["staged"], [sentinels["script"]])
            client.wait_until_done(sentinels["staged"], poll_interval=0.05, deadline=60)
    except AgentCallError as exc:
        problems.append(f"sentinel check failed: {exc}")
    return problems


def main(argv=None) -> int:
    from _load import AgentProcess, machine
    from protos.client import AgentClient

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:\n  python bench/fuzz.py                    # 100,000 inputs (make fuzz)\n"
                                            "  python bench/fuzz.py --inputs 2000 --seed 7 --json fuzz.json\n")
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs to send (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="Hypothesis seed (default 1)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the agent's directories")
    args = parser.parse_args(argv)
    if args.inputs < 1:
        parser.error(f"--inputs {args.inputs}: must be >= 1")
    work = Path(tempfile.mkdtemp(prefix="agent-fuzz-"))
    (work / "source").mkdir()
    agent = AgentProcess(work / "source", work / "state", work / "agent.log", 2, ["--quiet"])
    address = agent.start()
    channel = grpc.insecure_channel(address)
    client = AgentClient(channel, timeout=60)
    try:
        sentinels = make_sentinels(client, work / "source")
        began = time.perf_counter()
        for _ in range(500):  # baseline: well-formed status queries per second
            client.status(sentinels["done"])
        baseline_rate = 500 / (time.perf_counter() - began)
        rss_start = agent.rss_mb()
        fuzzer = Fuzzer(channel)
        problems: list[str] = []

        def progress(f):
            problems.extend(check_sentinels(client, sentinels))
            print(f"fuzz: {f.inputs} inputs, verdicts {dict(f.verdicts)}", file=sys.stderr, flush=True)

        began = time.perf_counter()
        fuzzer.run(args.inputs, args.seed, alive=lambda: agent.proc.poll() is None, every=10_000, progress=progress)
        seconds = time.perf_counter() - began
        alive = agent.proc.poll() is None
        problems += check_sentinels(client, sentinels, submit=True) if alive else ["agent dead"]
        rss_end = agent.rss_mb()
    finally:
        channel.close()
        if agent.proc.poll() is None:
            agent.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    bad = sum(n for v, n in fuzzer.verdicts.items() if v != "ok")
    figures = {"command": "python bench/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": machine(), "inputs": fuzzer.inputs, "seconds": round(seconds, 1),
               "inputs_per_s": round(fuzzer.inputs / seconds, 1), "baseline_valid_per_s": round(baseline_rate, 1),
               "verdicts": dict(fuzzer.verdicts), "codes": {f"{m} {c}": n for (m, c), n in sorted(fuzzer.codes.items())},
               "slowest_s": round(fuzzer.slowest, 3), "agent_alive": alive, "sentinel_problems": problems,
               "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1), "findings": fuzzer.findings}
    figures["verdict"] = "PASS" if alive and not bad and not problems else "FAIL"
    for k, v in figures["codes"].items():
        print(f"| {k:32} | {v} |")
    for line in fuzzer.findings + problems:
        print(f"finding: {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"fuzz: {fuzzer.inputs} inputs in {seconds:.0f} s ({figures['inputs_per_s']}/s = "
          f"x{fuzzer.inputs / seconds / baseline_rate:.2f} the well-formed baseline): "
          f"{fuzzer.verdicts['non-status']} non-status answers, {fuzzer.verdicts['wrong status']} wrong statuses, "
          f"{fuzzer.verdicts['transport']} unanswered, agent {'up' if alive else 'DEAD'}, "
          f"{len(problems)} sentinel problems, slowest answer {figures['slowest_s']} s, "
          f"RSS {figures['rss_start_mb']} -> {figures['rss_end_mb']} MB: {figures['verdict']}")
    return 0 if figures["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
