"""The egress policy: where requests on a user's behalf may go, and how much they may take.

Every connection here goes to a real HTTP server this test starts on 127.0.0.1. Host names are
resolved by a table the test hands the policy (never by DNS), so a name can "resolve" to a
private, link-local or loopback address without any traffic leaving the machine: refusals are
shown to happen before connecting by a real server at the resolved address that never sees a
request.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from ipaddress import ip_address, ip_network

import httpx
import pytest

from app.integrations.egress import EMBEDDED, EgressPolicy, classify, url_problem
from app.integrations.openai_compatible.check import check_connection, plain_http_key_warning
from app.integrations.openai_compatible.client import OpenAICompatibleClient
from app.integrations.openai_compatible.exceptions import (
    EndpointProtocolError,
    EndpointRefused,
    EndpointTimeout,
)
from app.integrations.openai_compatible.lora import load_lora_adapter
from app.integrations.openai_compatible.schemas import ChatRequest, EndpointSpec
from tests.app.endpoints.fault_server import (
    CHAT,
    MODELS,
    FaultServer,
    body,
    status,
    stream,
)

NAME = "llm.example.test"  # resolved only through the table below, never by DNS
PASSWORD = "hunter2-never-echoed"
MARKER = "INTERNAL-PAGE-CONTENT-4f1c"


class Table:
    """A resolver the test controls: name -> addresses; unknown names do not resolve."""

    def __init__(self, **names: Sequence[str]) -> None:
        self.names = {name.replace("_", "."): list(addresses) for name, addresses in names.items()}
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.names[host]


def ask(text: str) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], max_tokens=16)


def resolving(addresses: Sequence[str], **policy: object) -> EgressPolicy:
    """A policy under which NAME resolves to `addresses`."""
    return EgressPolicy(resolver=Table(**{NAME.replace(".", "_"): addresses}), **policy)  # type: ignore[arg-type]


def spec_at(server: FaultServer, egress: EgressPolicy, host: str = NAME, **changes: object):  # type: ignore[no-untyped-def]
    spec = EndpointSpec(
        base_url=f"http://{host}:{server.port}/v1",
        model="test-model",
        timeout_s=5.0,
        max_retries=0,
        egress=egress,
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


# --- the URL, when a model is registered ---------------------------------------------------

NEVER_URLS = [
    "http://169.254.169.254/latest/meta-data",
    "http://169.254.1.1/v1",
    "http://100.100.100.200/v1",
    "http://[fd00:ec2::254]/v1",
    "http://[fe80::1]/v1",
    "http://[fe80::1%25eth0]/v1",
    "http://[::ffff:169.254.169.254]/v1",
    "http://[::ffff:a9fe:a9fe]/v1",
    "http://[64:ff9b::a9fe:a9fe]/v1",
    "http://[2002:a9fe:a9fe::1]/v1",
    "http://metadata.google.internal/computeMetadata/v1",
    "http://METADATA.Google.Internal./v1",
    "http://0.0.0.0:8000/v1",
    "http://0.1.2.3/v1",
    "http://[::]:8000/v1",
    "http://224.0.0.1/v1",
    "http://[ff02::1]/v1",
    "http://255.255.255.255/v1",
    "http://240.0.0.1/v1",
]
ODD_SPELLINGS = [
    "http://2852039166/v1",  # 169.254.169.254 as one decimal number
    "http://0251.0376.0251.0376/v1",  # ... in octal
    "http://0xa9fea9fe/v1",  # ... in hex
    "http://0xa9.0xfe.0xa9.0xfe/v1",
    "http://169.254.43518/v1",  # ... short forms
    "http://169.16689662/v1",
    "http://127.1/v1",
    "http://0177.0.0.1/v1",
    "http://169.254.169.254./v1",  # a trailing dot
    "http://010.0.0.1/v1",
]
SHAPES = [
    f"http://team:{PASSWORD}@llm.example.test/v1",
    f"http://{PASSWORD}@llm.example.test/v1",
    f"http://llm.example.test/v1?key={PASSWORD}",
    "http://llm.example.test/v1?x=",
    "http://llm.example.test/v1#",
    "http://llm.example.test/admin#/v1",
    "http://llm.example.test:99999/v1",
    "http://llm.exa mple.test/v1",
    "http://llm.example.test\\@169.254.169.254/v1",
    "http://%31%36%39.254.169.254/v1",
    "gopher://llm.example.test/v1",
    "file:///etc/passwd",
]


@pytest.mark.parametrize("url", NEVER_URLS + ODD_SPELLINGS + SHAPES)
def test_a_forbidden_base_url_is_refused_in_every_mode_without_repeating_it(url: str) -> None:
    for policy in (EMBEDDED, EgressPolicy(mode="shared")):
        problem = policy.url_problem(url)
        assert problem is not None, url
        assert PASSWORD not in problem
        with pytest.raises(ValueError) as refused:
            EndpointSpec(url, "m", egress=policy)
        assert PASSWORD not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "http://localhost:8000/v1",
        "http://vllm:8000/v1",
        "http://[::1]:8000/v1",
        "http://10.1.2.3/v1",
        "http://192.168.1.20:8080/v1",
        "https://api.example.com/v1",
        "http://8.8.8.8/v1",
        "https://[2001:4860:4860::8888]/v1",
        "http://xn--bcher-kva.example/v1",
        "http://bücher.example/v1",
    ],
)
def test_ordinary_base_urls_pass_in_the_embedded_mode(url: str) -> None:
    assert url_problem(url) is None
    assert EMBEDDED.url_problem(url) is None


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/v1", "http://[::1]/v1", "http://10.1.2.3/v1", "http://100.64.0.1/v1"],
)
def test_the_shared_mode_refuses_a_literal_internal_address_unless_allowed(url: str) -> None:
    shared = EgressPolicy(mode="shared")
    assert "ENDPOINT_ALLOWED_HOSTS" in (shared.url_problem(url) or "")
    allowed = EgressPolicy.of(mode="shared", allowed="127.0.0.0/8, ::1, 10.0.0.0/8, 100.64.0.0/10")
    assert allowed.url_problem(url) is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "never"),
        ("::ffff:169.254.169.254", "never"),
        ("64:ff9b::a9fe:a9fe", "never"),
        ("fd00:ec2::254", "never"),
        ("100.100.100.200", "never"),
        ("0.0.0.0", "never"),
        ("::", "never"),
        ("239.1.2.3", "never"),
        ("255.255.255.255", "never"),
        ("127.0.0.1", "internal"),
        ("::1", "internal"),
        ("::ffff:127.0.0.1", "internal"),
        ("10.0.0.1", "internal"),
        ("172.16.0.1", "internal"),
        ("192.168.0.1", "internal"),
        ("100.64.0.1", "internal"),
        ("fd12:3456::1", "internal"),
        ("8.8.8.8", "public"),
        ("2001:4860:4860::8888", "public"),
    ],
)
def test_addresses_are_classified_by_where_packets_go(address: str, kind: str) -> None:
    assert classify(ip_address(address)) == kind


def test_a_bad_allowlist_entry_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        EgressPolicy.of(mode="shared", allowed="vllm, 10.0.0.0/33")
    policy = EgressPolicy.of(mode="shared", allowed=" vLLM.Internal. , 10.0.0.0/8 ,")
    assert policy.allowed_hosts == {"vllm.internal"}
    assert policy.allowed_networks == (ip_network("10.0.0.0/8"),)


# --- the resolved address, when connecting -----------------------------------------------------


def test_a_name_resolving_to_loopback_is_refused_in_the_shared_mode_before_connecting(
    fake: FaultServer,
) -> None:
    spec = spec_at(fake, resolving(["127.0.0.1"], mode="shared"))
    with pytest.raises(EndpointRefused, match="ENDPOINT_ALLOWED_HOSTS"):
        OpenAICompatibleClient(spec).chat(ask("hi"))
    report = check_connection(spec)
    assert not report.ok
    assert "was not contacted" in report.message and "ENDPOINT_ALLOWED_HOSTS" in report.message
    assert fake.seen == [], "the server at the resolved address never got a request"


@pytest.mark.parametrize(
    "addresses",
    [["169.254.169.254"], ["::ffff:169.254.169.254"], ["127.0.0.1", "169.254.169.254"]],
    ids=["metadata", "mapped-metadata", "one-good-one-bad"],
)
def test_a_name_resolving_to_a_never_address_is_refused_in_every_mode(
    fake: FaultServer, addresses: list[str]
) -> None:
    # What a rebinding name does: it passed registration as a name and resolves elsewhere now.
    for mode in ("embedded", "shared"):
        spec = spec_at(fake, resolving(addresses, mode=mode))
        assert url_problem(spec.base_url) is None
        with pytest.raises(EndpointRefused, match="never connects to"):
            OpenAICompatibleClient(spec).chat(ask("hi"))
    assert fake.seen == []


def test_the_embedded_mode_connects_to_the_checked_address_and_keeps_the_name(
    fake: FaultServer,
) -> None:
    policy = resolving(["127.0.0.1"])
    answer = OpenAICompatibleClient(spec_at(fake, policy)).chat(ask("hi"))
    assert answer.text == "answer to: hi"
    assert fake.seen[0].host == f"{NAME}:{fake.port}", "the Host header keeps the name"
    assert policy.resolver.asked == [NAME]  # type: ignore[attr-defined]


def test_a_name_that_does_not_resolve_is_named(fake: FaultServer) -> None:
    spec = spec_at(fake, resolving(["127.0.0.1"]), host="other.example.test")
    with pytest.raises(Exception, match=r"cannot resolve the host name 'other\.example\.test'"):
        OpenAICompatibleClient(spec).chat(ask("hi"))


@pytest.mark.parametrize(
    "allowed",
    [{"allowed_hosts": frozenset({NAME})}, {"allowed_networks": (ip_network("127.0.0.0/8"),)}],
    ids=["host-name", "cidr"],
)
def test_the_shared_mode_reaches_what_the_operator_allowed(
    fake: FaultServer, allowed: dict[str, object]
) -> None:
    report = check_connection(spec_at(fake, resolving(["127.0.0.1"], mode="shared", **allowed)))
    assert report.ok, report.message


def test_the_deployments_own_endpoint_is_allowed_but_not_other_ports_of_its_host(
    fake: FaultServer,
) -> None:
    own = EgressPolicy.of(mode="shared", default_endpoint_url=f"http://{NAME}:{fake.port}/v1")
    policy = replace(own, resolver=Table(llm_example_test=["127.0.0.1"]))
    assert check_connection(spec_at(fake, policy)).ok
    with FaultServer() as other:
        report = check_connection(spec_at(other, policy))
        assert other.seen == []
    assert not report.ok and "ENDPOINT_ALLOWED_HOSTS" in report.message


def test_loading_an_adapter_goes_through_the_policy(fake: FaultServer) -> None:
    spec = spec_at(fake, resolving(["127.0.0.1"], mode="shared"))
    with pytest.raises(EndpointRefused):
        load_lora_adapter(spec, "tiny", "/adapters/tiny")
    assert fake.seen == []


def test_only_a_mock_transport_may_replace_the_policy() -> None:
    spec = EndpointSpec("http://127.0.0.1:9/v1", "m")
    with pytest.raises(TypeError, match="MockTransport"):
        OpenAICompatibleClient(spec, transport=httpx.HTTPTransport())  # type: ignore[arg-type]


# --- what comes back ---------------------------------------------------------------------------


def test_a_redirect_is_not_followed_and_its_target_not_repeated(fake: FaultServer) -> None:
    target = "http://169.254.169.254/latest/meta-data/iam"
    fake.add(body(b"", "text/html", path=MODELS, code=302, headers=(("location", target),)))
    report = check_connection(spec_at(fake, EMBEDDED, host="127.0.0.1"))
    assert not report.ok
    assert "302 (a redirect, which is not followed)" in report.message
    assert "169.254" not in report.message and "meta-data" not in report.message
    assert [seen.path for seen in fake.seen] == [MODELS]


@pytest.mark.parametrize(
    "faults",
    [
        [body(f"<html>{MARKER}</html>".encode(), "text/html", path=MODELS)],
        [body(json.dumps({"users": [MARKER]}).encode(), "application/json", path=MODELS)],
        [body(MARKER.encode(), "text/plain", path=MODELS, code=500)],
        [
            body(MARKER.encode(), "text/plain", path=MODELS, code=404),
            body(MARKER.encode(), "text/plain", code=404),
        ],
        [body(f"<html>{MARKER}</html>".encode(), "text/html", code=200)],
        [body(MARKER.encode(), "text/plain", code=400)],
        [body(MARKER.encode(), "text/plain", code=403)],
    ],
    ids=["html", "other-json", "500-text", "404-text", "chat-html", "400-text", "403-text"],
)
def test_a_body_that_is_not_an_openai_answer_is_never_repeated(
    fake: FaultServer, faults: list
) -> None:  # type: ignore[type-arg]
    fake.add(*faults)
    report = check_connection(spec_at(fake, EMBEDDED, host="127.0.0.1"))
    assert not report.ok
    assert MARKER not in report.message
    assert str(fake.port) in report.message, "the message still says where it went"


def test_an_openai_shaped_error_is_still_passed_on(fake: FaultServer) -> None:
    fake.add(status(400, message="This model's maximum context length is 2048 tokens"))
    with pytest.raises(Exception, match="maximum context length is 2048"):
        OpenAICompatibleClient(spec_at(fake, EMBEDDED, host="127.0.0.1")).chat(ask("hi"))


MiB = 1024 * 1024


def test_an_answer_over_the_cap_is_refused_by_its_declared_length_before_reading(
    fake: FaultServer,
) -> None:
    # It says 64 MiB are coming, then drips: refused on the header, not at the deadline.
    declared = (("content-length", str(64 * MiB)),)
    fake.add(stream(b"x", chunks=100, every_s=0.1, headers=declared))
    capped = replace(EMBEDDED, max_answer_bytes=MiB, deadline_s=8.0)
    started = time.perf_counter()
    with pytest.raises(EndpointProtocolError, match="over 1 MiB, the limit on one answer"):
        OpenAICompatibleClient(spec_at(fake, capped, host="127.0.0.1")).chat(ask("hi"))
    assert time.perf_counter() - started < 2


def test_a_streamed_answer_is_cut_at_the_cap(fake: FaultServer) -> None:
    # 640 MiB with no length header: read to the end, it would take that much memory.
    fake.add(stream(b"x" * 65536, chunks=10_240))
    capped = replace(EMBEDDED, max_answer_bytes=MiB)
    started = time.perf_counter()
    with pytest.raises(EndpointProtocolError, match="over 1 MiB"):
        OpenAICompatibleClient(spec_at(fake, capped, host="127.0.0.1")).chat(ask("hi"))
    assert time.perf_counter() - started < 5
    assert fake.streams_finished == 0, "the client stopped reading"


def test_a_dripping_answer_ends_at_the_deadline_not_per_read(fake: FaultServer) -> None:
    # One byte every 0.1 s for 30 s: each read is far inside the 5 s timeout.
    fake.add(stream(b" ", chunks=300, every_s=0.1))
    policy = replace(EMBEDDED, deadline_s=1.0)
    started = time.perf_counter()
    with pytest.raises(EndpointTimeout, match=r"within 1 s, the limit on one whole request"):
        OpenAICompatibleClient(spec_at(fake, policy, host="127.0.0.1")).chat(ask("hi"))
    assert time.perf_counter() - started < 3


def test_the_check_is_bounded_by_its_own_timeout_in_all(fake: FaultServer) -> None:
    fake.add(stream(b" ", chunks=300, every_s=0.1, path=MODELS))
    started = time.perf_counter()
    report = check_connection(spec_at(fake, EMBEDDED, host="127.0.0.1"), timeout_s=1.0)
    assert time.perf_counter() - started < 3
    assert not report.ok and "within 1 s" in report.message


def test_a_compressed_answer_is_refused(fake: FaultServer) -> None:
    packed = gzip.compress(b'{"choices": []}' + b" " * MiB)
    fake.add(body(packed, "application/json", headers=(("content-encoding", "gzip"),)))
    with pytest.raises(EndpointProtocolError, match=r"compressed body \(gzip\)"):
        OpenAICompatibleClient(spec_at(fake, EMBEDDED, host="127.0.0.1")).chat(ask("hi"))
    assert fake.count(CHAT) == 1


# --- keys and logs -----------------------------------------------------------------------------


def test_a_key_over_plain_http_to_a_public_address_gets_a_warning(fake: FaultServer) -> None:
    keyed = EndpointSpec("http://api.example.com/v1", "m", api_key="sk-x")
    assert "plain http://" in (plain_http_key_warning(keyed, "8.8.8.8") or "")
    assert plain_http_key_warning(keyed, "10.0.0.5") is None, "a private network is usual"
    assert plain_http_key_warning(replace(keyed, api_key=None), "8.8.8.8") is None
    assert plain_http_key_warning(replace(keyed, base_url="https://x/v1"), "8.8.8.8") is None
    # The check knows where it connected: loopback here, so no warning.
    report = check_connection(spec_at(fake, EMBEDDED, host="127.0.0.1", api_key="sk-x"))
    assert report.ok and "Warning" not in report.message


def test_httpx_does_not_log_urls(fake: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert check_connection(spec_at(fake, EMBEDDED, host="127.0.0.1")).ok
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING
    assert str(fake.port) not in caplog.text
