"""The agent under test as the suite sees it: address, channel, capabilities, restart."""
from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from conformance import wire
from conformance.jobs import Witness
from conformance.launcher import AgentProcess
from conformance.ports import Tether, describe_port
from conformance.violations import AgentUnavailable, RestartNotObserved

CAPABILITIES_METHOD = "/AgentExtensions/GetCapabilities"

# Codes that mean "could not talk to the agent", not "the agent answered".
TRANSPORT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass
class Timing:
    """Every interval and deadline of the suite, multiplied by --time-scale."""

    scale: float = 1.0

    def __call__(self, seconds: float) -> float:
        return seconds * self.scale

    @property
    def poll(self) -> float:
        return self(0.02)

    @property
    def call(self) -> float:       # one small RPC
        return self(15.0)

    # what a request may cost an agent that fsyncs each file on a loaded machine: the contract sets
    # no time limit on staging, so the deadline grows with the files and bytes a request names
    PER_FILE = 0.04                # seconds per file named
    PER_BYTE = 1 / 5e6             # seconds per byte to copy (5 MB/s)

    def call_for(self, files: int = 0, size: int = 0) -> float:
        """The deadline of one call naming `files` files of `size` bytes in all."""
        return self(15.0 + self.PER_FILE * files + self.PER_BYTE * size)

    def hint(self, seconds: float) -> str:
        """What a deadline hit says: the deadline and the option that raises it."""
        return (f"the suite's deadline was {seconds:.1f} s at --time-scale {self.scale:g}: if the agent is slow "
                f"but correct (a loaded machine, fsync on every file), raise --time-scale")

    @property
    def start(self) -> float:      # a job with a free slot is started (or DONE) by then
        return self(10.0)

    @property
    def done(self) -> float:       # a short job is DONE by then
        return self(20.0)

    @property
    def done_after_end(self) -> float:  # AGT-STATE-3's bounded delay, generously
        return self(2.0)

    @property
    def gate(self) -> float:       # a gated job gives up waiting for its gate after this
        return self(60.0)

    @property
    def restart(self) -> float:
        return self(30.0)


@dataclass
class Target:
    """Connection and capabilities. `witness` is None without a shared witness folder, `slots`
    None when the slot count is unknown, `can_restart` False without a restart method."""

    address: str
    source: object
    timing: Timing = field(default_factory=Timing)
    witness: Witness | None = None
    slots: int | None = None
    python_version: str = "3"
    process: AgentProcess | None = None
    restart_cmd: str | None = None
    kill_cmd: str | None = None
    tls: tuple[bytes | None, bytes | None, bytes | None] | None = None
    max_request_bytes: int | None = None
    stalled: bool = False   # a job was left unstarted past its deadline (see Env._progress)
    extensions: frozenset | None = None   # what GetCapabilities lists; None: no AgentExtensions service
    cancelled_running: bool = False       # a RUN job was cancelled in this run (its slot must be free)
    _channel: grpc.Channel | None = None

    # --- connection -------------------------------------------------------------------------------

    def new_channel(self) -> grpc.Channel:
        """A channel of its own (a stream that must outlive the suite's channel, e.g. across a restart)."""
        saved, self._channel = self._channel, None
        try:
            return self.channel()
        finally:
            self._channel = saved

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            # large limits on the suite's side: a status or message that the agent sends must reach the
            # suite as sent (a client-side RESOURCE_EXHAUSTED would pass for the agent's own answer)
            options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1),
                       ("grpc.max_metadata_size", 64 * 1024 * 1024)]
            if self.tls is not None:
                ca, cert, key = self.tls
                creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
                self._channel = grpc.secure_channel(self.address, creds, options=options)
            else:
                self._channel = grpc.insecure_channel(self.address, options=options)
        return self._channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def call(self, method: str, payload: bytes, timeout: float | None = None,
             wait_for_ready: bool = False) -> tuple[grpc.StatusCode, str, bytes]:
        """Send raw request bytes; return (status code, details, raw response bytes)."""
        stub = self.channel().unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            response = stub(payload, timeout=timeout or self.timing.call, wait_for_ready=wait_for_ready or None)
            return grpc.StatusCode.OK, "", response
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", b""

    def wait_reachable(self, timeout: float) -> None:
        """Raise AgentUnavailable unless the agent answers a harmless call within `timeout`."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            # StageInFiles with no files for a never-seen job: OK and no state change (AGT-STAGE-1). Not a
            # RunJob without files: an agent that wrongly accepts one (AGT-RUN-2) would get a job with no
            # entry point from the probe itself, and may then fail every restart for a defect shown elsewhere.
            # wait_for_ready, not channel_ready_future: that one leaves a polling thread that raises
            # "Channel closed!" once the channel is closed.
            code, details, _ = self.call(wire.STAGE_METHOD, wire.stage_request(str(uuid.uuid4()), []),
                                         timeout=max(0.1, deadline - time.monotonic()), wait_for_ready=True)
            if code is grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() >= deadline - 0.05:
                last = describe_port(self.address)   # refused, an HTTP/1 or TLS server, silence...
                if self.tls is not None and last.startswith("a TLS server"):
                    last = "a TLS server answers but no TLS channel could be made: check --tls-ca, --tls-cert, --tls-key"
                break
            if code not in TRANSPORT_CODES:
                return
            last = f"{code.name}: {details}"
            time.sleep(self.timing.poll)
        raise AgentUnavailable(f"agent at {self.address} not reachable within {timeout:.0f} s ({last})")

    def capabilities(self) -> frozenset | None:
        """The extensions the agent lists in GetCapabilities (PROTOCOL-EXT); None when it has no
        AgentExtensions service (UNIMPLEMENTED: a v1 agent). An answer that does not parse lists
        nothing (the ext suite's AGT-EXT-1 check says why)."""
        from protos import AgentExtensions_pb2

        code, _, raw = self.call(CAPABILITIES_METHOD, b"")
        if code is grpc.StatusCode.UNIMPLEMENTED:
            return None
        if code in TRANSPORT_CODES:
            raise AgentUnavailable(f"GetCapabilities -> {code.name}")
        if code is not grpc.StatusCode.OK:
            return frozenset()
        try:
            return frozenset(AgentExtensions_pb2.Capabilities.FromString(raw).extensions)
        except Exception:   # protobuf's DecodeError and friends
            return frozenset()

    # --- restart ------------------------------------------------------------------------------------

    @property
    def can_restart(self) -> bool:
        return self.process is not None or self.restart_cmd is not None

    @property
    def can_sigkill(self) -> bool:
        return self.process is not None or (self.kill_cmd is not None and self.restart_cmd is not None)

    def restart(self, hard: bool = True) -> None:
        """Restart the agent, after a SIGKILL when `hard` (the suite's own process, or --kill-cmd then
        --restart-cmd), cleanly otherwise; wait until it answers. With commands, the agent must be seen
        going down from outside (a connection opened before the command closed, or the port refusing)
        after --kill-cmd, and after a clean --restart-cmd: a command that returned without that raises
        RestartNotObserved naming it (the durability check would otherwise pass on an agent that never
        restarted)."""
        if self.process is not None:
            self.close()
            self.address = self.process.restart(hard=hard)
        elif self.restart_cmd is not None:
            if hard and self.kill_cmd is None:
                raise RuntimeError("no way to SIGKILL this agent (--kill-cmd)")
            self.close()
            tether = Tether.open(self.address, preface=self.tls is None)
            if hard:
                self._shell("--kill-cmd", self.kill_cmd)
                self._went_down("--kill-cmd", self.kill_cmd, tether, self.timing(5.0), "SIGKILL")
                tether = None
            self._shell("--restart-cmd", self.restart_cmd)
            if tether is not None:
                self._went_down("--restart-cmd", self.restart_cmd, tether, self.timing(10.0), "restart")
            try:
                self.wait_reachable(self.timing.restart)
            except AgentUnavailable as exc:
                raise AgentUnavailable(f"--restart-cmd {self.restart_cmd!r} returned but the agent did not come "
                                       f"back: {exc}") from None
            return
        else:
            raise RuntimeError("no way to restart this agent")
        self.wait_reachable(self.timing.restart)

    def _went_down(self, option: str, command: str, tether: Tether | None, wait: float, verb: str) -> None:
        """Return once the agent is seen down (the tether closed, or the port refusing) within `wait`."""
        limit = time.monotonic() + wait
        while True:
            if tether is not None and tether.closed(min(0.2, wait)):
                return
            if describe_port(self.address, timeout=0.5).startswith("connection refused"):
                return
            if time.monotonic() > limit:
                break
        if tether is not None:
            tether.close()
        held = ("a connection opened before it stayed open" if tether is not None
                else "the port accepted connections throughout")
        raise RestartNotObserved(
            f"{option} {command!r} returned, but the agent at {self.address} did not go down: {held} for "
            f"{wait:.0f} s after the command returned and the port still accepts connections. {option} must "
            f"{verb} the agent (a no-op such as 'true' cannot); the durability check (AGT-DUR-1) needs a real "
            f"{verb} (raise --time-scale if the agent only goes down later)")

    def _shell(self, option: str, command: str) -> None:
        """Run a user command by /bin/sh with its output to a file, never a pipe: an agent started in the
        background (`... &`) keeps the file open, not the suite waiting on a pipe."""
        with tempfile.TemporaryFile(prefix="agent-conformance-cmd-") as log:
            try:
                done = subprocess.run(command, shell=True, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, timeout=self.timing.restart)
            except subprocess.TimeoutExpired:
                raise AgentUnavailable(f"{option} {command!r} did not return within {self.timing.restart:.0f} s "
                                       f"(it must start or kill the agent and return)") from None
            if done.returncode != 0:
                log.seek(0)
                text = log.read(2000).decode("utf-8", "replace").strip()
                raise AgentUnavailable(f"{option} {command!r} exited {done.returncode}: {text[:300]}")


def read_optional(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None
