"""The server's TLS files, checked at start: each bad one named with what is wrong with it.

grpc reports a key that does not match its certificate, or a client CA file that holds no
certificate, only as "cannot bind"; an expired server certificate it accepts silently (and every
client then fails its handshake). These checks read the files with the standard library's `ssl`
first and say which file is wrong and why.
"""
from __future__ import annotations

import datetime
import ssl
from pathlib import Path
from typing import Callable

import grpc

from reference_agent.config import ConfigError

# A server certificate expiring sooner than this is named in a warning at start.
EXPIRY_WARNING = datetime.timedelta(days=14)


def _read(option: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{option} {path!r}: cannot be read ({exc.strerror})") from None


def _no_password():
    raise ConfigError("the key is encrypted: give an unencrypted PEM key (readable by the agent only)")


def _check_pair(cert: str, key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ConfigError as exc:
        raise ConfigError(f"--tls-key {key!r}: {exc}") from None
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise ConfigError(f"--tls-key {key!r} is not the key of --tls-cert {cert!r} "
                              f"(they do not match)") from None
        which = "--tls-key" if "PEM" in str(exc) and _has_certificate(cert) else "--tls-cert"
        bad = key if which == "--tls-key" else cert
        what = "certificate" if which == "--tls-cert" else "private key"
        raise ConfigError(f"{which} {bad!r} does not hold a usable PEM {what}: {exc.reason or exc}") from None


def _has_certificate(path: str) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(path)
        return True
    except (ssl.SSLError, OSError):
        return False


def _check_ca(ca: str) -> None:
    data = _read("--tls-client-ca", ca)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"--tls-client-ca {ca!r} holds no PEM certificate ({getattr(exc, 'reason', None) or exc}): "
                          f"give the CA that signs the clients' certificates") from None


def not_after(cert: str) -> datetime.datetime | None:
    """The end of the certificate's validity (UTC), or None when it cannot be read."""
    try:
        from cryptography import x509

        loaded = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        return loaded.not_valid_after_utc
    except ImportError:
        pass
    except (ValueError, OSError):
        return None
    try:  # the standard library's reader (private, but present in every CPython 3)
        decoded = ssl._ssl._test_decode_cert(cert)  # type: ignore[attr-defined]
        return datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(decoded["notAfter"]),
                                               datetime.timezone.utc)
    except (AttributeError, KeyError, ValueError, OSError, ssl.SSLError):
        return None


def _check_validity(cert: str, now: datetime.datetime, warn: Callable[..., None]) -> None:
    end = not_after(cert)
    if end is None:
        return
    if end <= now:
        raise ConfigError(f"--tls-cert {cert!r} expired on {end:%Y-%m-%d %H:%M:%S} UTC: every client would "
                          f"refuse it; renew it")
    if end - now < EXPIRY_WARNING:
        warn("tls", event="certificate expires soon", file=cert, not_after=f"{end:%Y-%m-%d %H:%M:%S} UTC")


def server_credentials(tls_cert: str | None, tls_key: str | None, client_ca: str | None,
                       warn: Callable[..., None] = lambda *a, **k: None,
                       now: datetime.datetime | None = None) -> grpc.ServerCredentials | None:
    """The server's credentials from its PEM files, or None without --tls-cert. ConfigError
    names the file that is wrong: unreadable, not PEM, key and certificate that do not match, a
    client CA with no certificate, an expired certificate. `warn(kind, **fields)` logs one that
    expires within EXPIRY_WARNING."""
    if not tls_cert:
        return None
    cert, key = _read("--tls-cert", tls_cert), _read("--tls-key", tls_key or "")
    _check_pair(tls_cert, tls_key)
    _check_validity(tls_cert, now or datetime.datetime.now(datetime.timezone.utc), warn)
    ca = None
    if client_ca:
        _check_ca(client_ca)
        ca = _read("--tls-client-ca", client_ca)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
