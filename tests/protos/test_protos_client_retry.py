"""Backoff, the retrying calls (stage, submit, wait_until_done) and connect(), over loopback to a fake."""
from __future__ import annotations

import datetime
import ipaddress
import math
import random
import time
import uuid

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakes import AfterPolls, ClientHabitWarning, FakeAgent, ManualClock, Scripted
from protos.client import AgentClient, AgentUnavailable, AlreadySubmitted, Backoff, JobTimeout, UnknownJob, Unstaged
from protos.states import JobState


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def fake():
    """fake(**config) -> (agent, client, clock, sleeps); the client's sleep moves the fake clock."""
    made = []

    def make(**config):
        config.setdefault("extensions", None)   # a v1 fake: these tests are about polling
        clock = ManualClock()
        sleeps: list[float] = []
        agent = FakeAgent(clock=clock, **config)
        serving = agent.serve()
        address = serving.__enter__()

        def sleep(seconds):
            sleeps.append(seconds)
            clock.advance(seconds)

        client = AgentClient.connect(address, timeout=5, clock=clock, sleep=sleep,
                                     backoff=Backoff(initial=0.1, maximum=1.6, jitter=0))
        made.append((serving, client))
        return agent, client, clock, sleeps

    yield make
    for serving, client in made:
        client.close()
        serving.__exit__(None, None, None)


# --- Backoff ---------------------------------------------------------------------------------

def test_backoff_grows_caps_and_jitters_reproducibly():
    plain = Backoff(initial=0.1, maximum=1.0, multiplier=2, jitter=0)
    assert [plain.delay(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert plain.delay(10_000) == 1.0   # no overflow far out
    a, b = (Backoff(jitter=0.5, rng=random.Random(42)) for _ in range(2))
    assert [a.delay(n) for n in range(20)] == [b.delay(n) for n in range(20)]
    assert Backoff.fixed(0.3).delay(7) == 0.3 and Backoff.fixed(0).delay(3) == 0


@given(initial=st.floats(0.001, 5), factor=st.floats(1, 100), multiplier=st.floats(1, 10),
       jitter=st.floats(0, 1), attempt=st.integers(0, 5000), seed=st.integers(0, 2**32))
def test_every_delay_lies_within_its_jitter_band(initial, factor, multiplier, jitter, attempt, seed):
    backoff = Backoff(initial, initial * factor, multiplier, jitter, random.Random(seed))
    ceiling = backoff.ceiling(attempt)
    assert initial * (1 - 1e-9) <= ceiling <= initial * factor * (1 + 1e-9)
    assert ceiling * (1 - jitter) - 1e-12 <= backoff.delay(attempt) <= ceiling + 1e-12


@pytest.mark.parametrize("kwargs, message", [
    (dict(initial=-1), "initial must be a finite number >= 0, got -1"),
    (dict(initial=float("nan")), "initial must be a finite number >= 0, got nan"),
    (dict(initial=2, maximum=1), r"maximum must be >= initial \(2\), got 1"),
    (dict(maximum=float("inf")), "maximum must be a finite number >= 0, got inf"),
    (dict(multiplier=0.5), "multiplier must be a finite number >= 1, got 0.5"),
    (dict(jitter=1.5), "jitter must be between 0 and 1, got 1.5"),
    (dict(jitter=True), "jitter must be a finite number >= 0, got True"),
])
def test_malformed_backoff_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)
    with pytest.raises(TypeError, match="rng must be a random.Random"):
        Backoff(rng=42)


@pytest.mark.parametrize("kwargs, message", [
    (dict(timeout=0), "timeout must be > 0 seconds"),
    (dict(timeout=-3), "timeout must be a finite number of seconds >= 0, got -3"),
    (dict(timeout="10"), "timeout must be a finite number of seconds >= 0, got '10'"),
    (dict(token=""), "token must be a non-empty one-line string, got ''"),
    (dict(token="a\nb"), "token must be a non-empty one-line string"),
    (dict(cert=b"x"), "mutual TLS needs both cert and key"),
])
def test_malformed_client_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AgentClient.connect("127.0.0.1:1", **kwargs)


def test_malformed_deadlines_are_refused(fake):
    agent, client, *_ = fake()
    for bad in (-1, float("nan"), float("inf"), "5"):
        with pytest.raises(ValueError, match=f"deadline must be a finite number of seconds >= 0, got {bad!r}"):
            client.wait_until_done(new_id(), deadline=bad)
    assert agent.calls == []


# --- retrying calls --------------------------------------------------------------------------

def test_submit_retries_lost_and_refused_calls_and_creates_one_job(fake):
    agent, client, _, sleeps = fake()
    f = agent.source.add(b"pass\n")
    job = new_id()
    faults = agent.backend.faults
    faults.fail_next("UNAVAILABLE", method="StageInFiles", after_apply=True)
    faults.fail_next("UNAVAILABLE", method="RunJob", after_apply=True)
    faults.fail_next("UNAVAILABLE", method="RunJob")
    assert client.submit(job, [f]) is JobState.RUN   # answer 2: the lost submission was answer 1
    assert [(c.method, c.code.name) for c in agent.calls] == [
        ("StageInFiles", "UNAVAILABLE"), ("StageInFiles", "OK"),
        ("RunJob", "UNAVAILABLE"), ("RunJob", "UNAVAILABLE"), ("RunJob", "OK")]
    assert len(agent.backend.jobs()) == 1 and sleeps == [0.1, 0.1, 0.2]


def test_submit_again_is_a_status_query_and_other_files_are_refused(fake):
    agent, client, *_ = fake(progression=Scripted(["WAIT", "RUN"]))
    f, g, job = agent.source.add(b"pass\n"), agent.source.add(b"other\n"), new_id()
    assert client.submit(job, [f]) is JobState.WAIT
    assert client.submit(job, [f]) is JobState.RUN        # as a restarted client would send it
    with pytest.raises(AlreadySubmitted), pytest.warns(ClientHabitWarning, match="stage-after-submit|mismatched-repeat"):
        client.submit(job, [g])
    assert len(agent.backend.jobs()) == 1 and agent.backend.job(job).files == (f,)
    assert [h.kind for h in agent.backend.habits] == ["stage-after-submit", "mismatched-repeat"]


def test_submit_retries_an_answer_slower_than_the_call_timeout(fake):
    agent, client, *_ = fake()
    client.timeout = 0.2
    f, job = agent.source.add(b"pass\n"), new_id()
    agent.backend.faults.slow_next(method="RunJob")
    assert client.submit(job, [f]) is JobState.RUN
    end = time.monotonic() + 10
    while not any(c.injected for c in agent.backend.calls_to("RunJob")) and time.monotonic() < end:
        time.sleep(0.01)   # the slow answer is recorded once the server saw its caller give up
    runs = agent.backend.calls_to("RunJob")
    assert [c.code.name for c in runs if c.injected] == ["DEADLINE_EXCEEDED"] and any(c.ok for c in runs)
    assert len(agent.backend.jobs()) == 1


def test_stage_names_what_the_source_lacks_and_sends_no_runjob(fake):
    agent, client, *_ = fake()
    good, absent = agent.source.add(b"pass\n"), new_id()
    with pytest.raises(Unstaged) as info:
        client.submit(new_id(), [good, absent])
    assert info.value.files == [absent] and absent in str(info.value)
    assert [c.method for c in agent.calls] == ["StageInFiles"]


def test_a_retrying_call_gives_up_at_its_deadline(fake):
    agent, client, clock, sleeps = fake()
    agent.backend.connected = False
    with pytest.raises(AgentUnavailable, match=r"gave up submitting after 3 s, \d+ attempts"):
        client.submit(new_id(), [new_id()], stage=False, deadline=3)
    assert 3 <= clock() <= 3.001 and sleeps[:5] == [0.1, 0.2, 0.4, 0.8, 1.5]


def test_wait_backs_off_resets_on_change_and_retries_transients(fake):
    agent, client, _, sleeps = fake(progression=Scripted(["WAIT"] * 6 + ["RUN", "DONE"]))
    f, job = agent.source.add(b"pass\n"), new_id()
    client.submit(job, [f])
    agent.backend.faults.fail_next("UNAVAILABLE", method="RunJob", times=2)
    seen = []
    timeline = client.wait_until_done(job, deadline=600, on_state=seen.append)
    assert seen == [JobState.WAIT, JobState.RUN, JobState.DONE] and timeline.final is JobState.DONE
    assert [code for _, code in timeline.retries] == ["UNAVAILABLE", "UNAVAILABLE"]
    # two failed polls (backoff grows), the first answer (WAIT: from 0.1 again), four more WAIT
    # answers (grows to the 1.6 cap), RUN (from 0.1 again), DONE
    assert sleeps == [0.1, 0.2, 0.1, 0.2, 0.4, 0.8, 1.6, 0.1]
    assert timeline.polls == len(sleeps) + 1


def test_wait_raises_unknown_job_at_once(fake):
    agent, client, _, sleeps = fake()
    with pytest.raises(UnknownJob):
        client.wait_until_done(new_id(), deadline=600)
    assert sleeps == [] and len(agent.calls) == 1


def test_wait_without_retry_and_timeout_with_last_error(fake):
    agent, client, *_ = fake(progression=AfterPolls(wait=100))
    f, job = agent.source.add(b"pass\n"), new_id()
    client.submit(job, [f])
    agent.backend.faults.fail_next("UNAVAILABLE", method="RunJob")
    with pytest.raises(AgentUnavailable):
        client.wait_until_done(job, deadline=600, retry=False)
    agent.backend.connected = False
    with pytest.raises(JobTimeout) as info:
        client.wait_until_done(job, deadline=10)
    err = info.value
    assert err.last_error is not None and err.last_error.code_name == "UNAVAILABLE"
    assert err.code_name == "DEADLINE_EXCEEDED" and err.job == job and "last poll failed with UNAVAILABLE" in str(err)


def test_poll_interval_alone_keeps_the_old_fixed_interval(fake):
    agent, client, _, sleeps = fake(progression=Scripted(["WAIT"] * 4 + ["DONE"]))
    f, job = agent.source.add(b"pass\n"), new_id()
    client.submit(job, [f])
    with pytest.raises(TypeError, match="positional"):   # issue 22.8: 0.25 was read as poll_interval
        client.wait_until_done(job, 0.25, 60)
    client.wait_until_done(job, poll_interval=0.25, deadline=60)
    assert sleeps == [0.25] * 3


# --- connect ---------------------------------------------------------------------------------

def test_connect_sends_the_token_on_every_call():
    agent = FakeAgent()
    with agent.serve() as address, AgentClient.connect(address, token="s3cret", timeout=5) as client:
        client.stage_in(new_id(), [])
        with pytest.raises(UnknownJob):
            client.status(new_id())
    assert all(("authorization", "Bearer s3cret") in c.metadata for c in agent.calls) and len(agent.calls) == 2


def _pem(common_name, issuer=None):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer[0].subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True))
    if issuer:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key, cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def test_connect_over_tls_to_a_tls_fake():
    pytest.importorskip("cryptography")
    ca_cert, ca_key, ca_pem, _ = _pem("test-ca")
    _, _, srv_pem, srv_key = _pem("agent", issuer=(ca_cert, ca_key))
    agent = FakeAgent()
    with agent.serve(credentials=grpc.ssl_server_credentials([(srv_key, srv_pem)])) as address:
        with AgentClient.connect(address, ca=ca_pem, timeout=5) as client:
            assert client.stage_in(new_id(), []) == []
        with AgentClient.connect(address, timeout=2) as plain, pytest.raises(AgentUnavailable):
            plain.stage_in(new_id(), [])
    assert len(agent.calls) == 1 and math.isfinite(agent.calls[0].at)
