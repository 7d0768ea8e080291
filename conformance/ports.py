"""What the suite sees of the agent's port from outside, below gRPC: a connection held open across a
restart or kill command (the agent going down closes it), and what answers on a port that is no gRPC
agent (refused, an HTTP/1 server, a TLS server, silence). Written from TCP and HTTP/2, not from any
agent's habits."""
from __future__ import annotations

import select
import socket
import time

# The HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113, 3.4): a gRPC server
# takes the connection for a client's and keeps it open until it goes away.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _connect(address: str, timeout: float) -> socket.socket:
    return socket.create_connection(split_address(address), timeout=timeout)


class Tether:
    """A TCP connection to the agent opened before a command that must take the agent down. The kernel
    closes it when the agent's process ends (EOF or reset), a server shutting down closes it after its
    GOAWAY; a command that left the agent alone leaves it open."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.gone = False

    @classmethod
    def open(cls, address: str, timeout: float = 2.0, preface: bool = True) -> "Tether | None":
        """None when no connection can be made (the port check decides then). `preface`: send the HTTP/2
        preface (plaintext agents); a TLS agent gets nothing and waits for a handshake meanwhile."""
        try:
            sock = _connect(address, timeout)
        except OSError:
            return None
        try:
            if preface:
                sock.sendall(PREFACE)
        except OSError:
            sock.close()
            return None
        tether = cls(sock)
        # a server that closes at once (TLS, not HTTP/2) cannot tell us anything: no tether then
        if tether.closed(0.2):
            return None
        return tether

    def closed(self, wait: float) -> bool:
        """True once the peer has closed the connection (EOF or reset); reads and drops its frames."""
        if self.gone:
            return True
        limit = time.monotonic() + wait
        while True:
            left = limit - time.monotonic()
            try:
                ready, _, _ = select.select([self.sock], [], [], max(0.0, left))
                if ready:
                    data = self.sock.recv(65536)
                    if not data:
                        self.gone = True
                    else:
                        continue   # SETTINGS, PING, GOAWAY...: read on until EOF or the deadline
            except (ConnectionError, OSError):
                self.gone = True
            if self.gone:
                self.close()
                return True
            if left <= 0:
                return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def describe_port(address: str, timeout: float = 2.0) -> str:
    """One phrase on what answers at `address` when gRPC does not: 'connection refused', 'an HTTP/1
    server answers ...', 'a TLS server answers ...', 'the port accepts connections but ...'. Called only
    once no gRPC channel could be made."""
    try:
        sock = _connect(address, timeout)
    except ConnectionRefusedError:
        return "connection refused: nothing listens on the port"
    except socket.timeout:
        return f"no connection within {timeout:.0f} s (a firewall, or a host that does not answer)"
    except OSError as exc:
        return f"no connection: {exc.strerror or exc}"
    with sock:
        try:   # an HTTP/1.1 request: HTTP/1 servers answer it in kind, HTTP/2-only ones with frames
            sock.sendall(b"GET / HTTP/1.1\r\nHost: " + address.encode("ascii", "replace") + b"\r\n\r\n")
            sock.settimeout(timeout)
            data = sock.recv(256)
        except socket.timeout:
            return "the port accepts connections but sends nothing back to an HTTP/2 client (not a gRPC server?)"
        except OSError as exc:
            return f"the port accepts connections but resets them ({exc.strerror or exc})"
    if data.startswith(b"HTTP/") or data.lstrip()[:1] == b"<":
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        return f"an HTTP/1 server answers on the port ({line!r}), not a gRPC agent: check the address"
    if data[:1] in (b"\x15", b"\x16"):
        return "a TLS server answers on the port: give --tls-ca (and --tls-cert/--tls-key for mutual TLS)"
    if not data:
        return "the port accepts connections but closes them at once (not a gRPC server?)"
    if len(data) >= 9 and data[3] == 4:
        return "an HTTP/2 server answers on the port, but no gRPC channel could be made to it"
    return f"the port answers {data[:16]!r}..., which is not HTTP/2 (not a gRPC server)"
