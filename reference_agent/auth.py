"""Bearer-token authentication: a server interceptor checking `authorization: Bearer TOKEN`."""
from __future__ import annotations

import hmac
from pathlib import Path

import grpc

from reference_agent.config import ConfigError
from reference_agent.servicer import HEALTH_CHECK, HEALTH_WATCH, REFLECTION_INFO, SERVICE
from reference_agent.telemetry import cut

# Standard health checks stay open so that orchestrators can probe without a secret; they
# reveal only SERVING / NOT_SERVING.
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
HEADER = "authorization"
SCHEME = "bearer"
# Metrics labels of refused calls: the known methods by name, every other name as one label, so
# that callers without a token cannot grow the metrics (one series per label) without bound.
KNOWN_LABELS = {f"/{SERVICE.full_name}/{m.name}": m.name for m in SERVICE.methods}
KNOWN_LABELS.update({name: name for name in (HEALTH_CHECK, HEALTH_WATCH, REFLECTION_INFO)})
UNKNOWN_LABEL = "unknown-method"


def load_tokens(path: str | Path) -> tuple[bytes, ...]:
    """Tokens from a file: one per line; blank lines and lines starting with '#' are skipped.

    Raises ConfigError naming the file when it cannot be read, holds no token, or a token is
    not printable ASCII without spaces (the only kind a metadata value can carry)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--auth-tokens {str(path)!r}: cannot read ({exc})") from None
    tokens = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not all(33 <= ord(c) <= 126 for c in line):
            raise ConfigError(f"--auth-tokens {str(path)!r}: line {number} is not a token "
                              "(printable ASCII without spaces)")
        tokens.append(line.encode("ascii"))
    if not tokens:
        raise ConfigError(f"--auth-tokens {str(path)!r}: no token in the file")
    return tuple(tokens)


def token_of(metadata) -> bytes | None:
    """The token of the first `authorization: Bearer TOKEN` entry, or None."""
    for key, value in metadata or ():
        if key.lower() != HEADER:
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == SCHEME and token.strip():
            return token.strip().encode("latin-1")
        return None
    return None


def _refusal(message: str) -> grpc.RpcMethodHandler:
    """A handler that ends the call with UNAUTHENTICATED at once, before any request message:
    request-streaming, so grpc.aio calls it on the headers alone (a unary handler would first
    wait for a message that a half-open call never sends). The wire is the same for every arity."""
    async def deny(_requests, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.stream_unary_rpc_method_handler(deny)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call (Agent and reflection; also unknown methods, so their existence is
    not revealed) that lacks `authorization: Bearer T` with T in the allowed tokens: status
    UNAUTHENTICATED, logged as such, sent on the call's headers alone. Tokens are compared in
    constant time. Health stays open."""

    def __init__(self, tokens, telemetry=None):
        self.tokens = tuple(t if isinstance(t, bytes) else t.encode("ascii") for t in tokens)
        if not self.tokens:
            raise ValueError("TokenAuthInterceptor needs at least one token")
        self.telemetry = telemetry

    def allowed(self, token: bytes | None) -> bool:
        if token is None:
            return False
        ok = False
        for candidate in self.tokens:  # no early exit: timing does not tell which token matched
            ok |= hmac.compare_digest(candidate, token)
        return ok

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(OPEN_PREFIXES):
            return await continuation(handler_call_details)
        token = token_of(handler_call_details.invocation_metadata)
        if self.allowed(token):
            return await continuation(handler_call_details)
        reason = "missing bearer token" if token is None else "bearer token not accepted"
        if self.telemetry is not None:
            label = KNOWN_LABELS.get(method, UNKNOWN_LABEL)
            extra = {} if label != UNKNOWN_LABEL else {"requested": cut(method, 64)}
            self.telemetry.rpc(label, "UNAUTHENTICATED", 0.0, reason=reason, **extra)
        return _refusal(f"{reason}: send metadata 'authorization: Bearer TOKEN' with a token the agent allows")
