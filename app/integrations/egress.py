"""Where the server may send a request on a user's behalf: one policy for every such request.

Users register base URLs, and the web app (*Check connection*) and the worker (pilot arms, the
judge, LoRA adapter loads) then send requests there. Without a policy that is a server-side
request forgery: a user could make this server read its cloud metadata service, its own admin
ports or the cluster's internal services, and read the answers back in error messages.

Addresses fall into three classes:

* never: link-local (169.254.0.0/16, fe80::/10, where cloud metadata services live), the known
  metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200) and the name
  metadata.google.internal, unspecified (0.0.0.0/8, which Linux connects to this host, and ::),
  multicast, broadcast and reserved ranges. Refused in every mode.
* internal: loopback, private ranges and every other address that is not globally routable.
  Allowed in the single-user embedded mode, whose main use is a vLLM on 127.0.0.1; in the shared
  mode only when the operator allowlisted the host name or a CIDR holding the address
  (ENDPOINT_ALLOWED_HOSTS), or when it is the deployment's own default endpoint.
* public: everything else.

IPv4 embedded in IPv6 (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is
judged by the IPv4 address, which is where the packets go.

The policy is checked twice. When a model is registered, its URL (`url_problem`): no user-info,
query or fragment (credentials would be stored in plain text and logged; `?` and `#` would let
the user choose the path the client appends), a literal address must be written as such
(legacy IPv4 spellings like `2852039166` or `0251.0376.0251.0376` are refused outright) and not
be refused by the mode. And when connecting (`EgressTransport`): the host name is resolved here,
every address it resolves to is checked, and the socket connects to a checked address, while
the Host header and TLS SNI keep the name. So DNS rebinding (a name that resolves to a public
address when registered and to 169.254.169.254 when used) cannot get around it. Redirects are
never followed (httpx's default; the client reports them).

The same transport bounds each request's total time (`request_deadline`): every read, write and
connect waits at most until the deadline, so a server that drips one byte at a time cannot hold
a request beyond it. Only the standard library, httpx and httpcore are imported: the web app and
the worker both use this module through the endpoint client.
"""

from __future__ import annotations

import contextvars
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
EgressMode = Literal["embedded", "shared"]
AddressClass = Literal["never", "internal", "public"]
# (host, port) -> the addresses the host resolves to, as strings. Tests point it at a table.
Resolver = Callable[[str, int], Sequence[str]]

MiB = 1024 * 1024

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
METADATA_NAMES = frozenset({"metadata.google.internal"})
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# A host name: labels of letters, digits, '-' and '_' (IDNA names arrive encoded as xn--...).
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# A host every label of which is a number (decimal, octal or 0x-hex): an IPv4 address in some
# spelling, which resolvers and URL parsers read in different ways.
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


class EgressRefused(Exception):
    """The policy refused a destination. str() says why, in words fit to show the user."""


# --- addresses --------------------------------------------------------------------------------


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries to (mapped, NAT64, 6to4), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def classify(address: IPAddress) -> AddressClass:
    """never, internal or public, as the module docstring defines them."""
    address = embedded_ipv4(address)
    if address.is_loopback:
        return "internal"
    if (
        address in METADATA_ADDRESSES
        or address.is_unspecified
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved  # IPv4 240.0.0.0/4 with the broadcast address; IPv6 ::/8 etc.
        or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK)
    ):
        return "never"
    if address.is_private or not address.is_global:
        return "internal"
    return "public"


def _why_never(address: IPAddress) -> str:
    if embedded_ipv4(address) in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if embedded_ipv4(address).is_link_local:
        return "a link-local address (where cloud metadata services live)"
    return "an unspecified, multicast, broadcast or reserved address"


def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (getaddrinfo): what a plain connect would use."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def normalized_host(host: str) -> str:
    """Lower case, no trailing dot, IDNA-encoded: the form names are compared in."""
    host = host.strip().lower().rstrip(".")
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host  # left as it is; _host_problem refuses it


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells literally (brackets already removed), else None."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0] if ":" in host else host)
    except ValueError:
        return None


def _host_problem(host: str) -> str | None:
    """Why a URL's host cannot be used, whatever the mode; None when it can."""
    if ":" in host:  # IPv6, from inside brackets
        return None if literal_address(host) is not None else "its IPv6 address is not valid"
    name = host.rstrip(".")
    labels = name.split(".")
    if name and all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
        if host == name and _CANONICAL_IPV4.fullmatch(name):
            return None
        # 2852039166, 0251.0376.0251.0376, 0xa9fea9fe, 127.1: resolvers read these as IPv4
        # addresses, each in its own way. Only the plain spelling is accepted.
        return "write an IPv4 address as four decimal numbers, e.g. 192.0.2.10"
    if not _HOST_NAME.fullmatch(normalized_host(host)):
        return "its host name is not valid"
    return None


def url_problem(url: str) -> str | None:
    """What is wrong with a base URL in every mode, in words that never repeat a credential;
    None when nothing is. The mode's own rules are `EgressPolicy.url_problem`."""
    if any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in url):
        return "the base URL must not contain spaces, control characters or backslashes"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number 0-65535
    except ValueError:
        return "the base URL is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "the base URL must start with http:// or https://, e.g. http://127.0.0.1:8000/v1"
    if "@" in parts.netloc:
        return (
            "the base URL must not contain a user name or password: enter the key in the "
            "API key field (it is stored encrypted)"
        )
    if "?" in url or "#" in url:
        return (
            "the base URL must not have a query (?) or fragment (#): it is the API root the "
            "client appends paths to, e.g. https://host/v1"
        )
    host = parts.hostname or ""
    problem = _host_problem(host)
    if problem is not None:
        return f"the base URL's host: {problem}"
    if normalized_host(host) in METADATA_NAMES:
        return f"{host} is a cloud metadata service, which this server never connects to"
    address = literal_address(host)
    if address is not None and classify(address) == "never":
        return f"{host} is {_why_never(address)}, which this server never connects to"
    return None


# --- the policy -------------------------------------------------------------------------------


def parse_allowlist(text: str) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """ENDPOINT_ALLOWED_HOSTS: comma-separated host names, addresses and CIDRs."""
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        if "/" in entry or _host_problem(entry) is not None:
            raise ValueError(f"{entry!r} is neither a host name nor an address or CIDR")
        names.add(normalized_host(entry))
    return frozenset(names), tuple(networks)


@dataclass(frozen=True)
class EgressPolicy:
    """Where requests on a user's behalf may go, and how much of an answer they may take.

    `mode` "embedded" (one user on their own machine) lets them reach internal addresses;
    "shared" (a team's server) only the allowlisted ones: `allowed_hosts` (names, compared as
    `normalized_host`), `allowed_networks`, and `allowed_endpoints`, the (host, port) of the
    deployment's own default endpoint. `max_answer_bytes` caps one answer's body and
    `deadline_s` one request's total time. `max_per_host`: most requests in flight to one
    host from this process, all clients together (`app.integrations.host_slots.HOST_SLOTS`).
    `resolver` turns a name into addresses.
    """

    mode: EgressMode = "embedded"
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_endpoints: frozenset[tuple[str, int]] = frozenset()
    max_answer_bytes: int = 8 * MiB
    deadline_s: float = 300.0
    max_per_host: int = 16
    resolver: Resolver = field(default=system_resolver, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in ("embedded", "shared"):
            raise ValueError("the egress mode is 'embedded' or 'shared'")
        if self.max_answer_bytes < 1 or not self.deadline_s > 0:
            raise ValueError("max_answer_bytes and deadline_s must be positive")
        if self.max_per_host < 1:
            raise ValueError("max_per_host must be at least 1")

    @classmethod
    def of(
        cls,
        *,
        mode: EgressMode,
        allowed: str = "",
        default_endpoint_url: str = "",
        max_answer_bytes: int = 8 * MiB,
        deadline_s: float = 300.0,
        max_per_host: int = 16,
    ) -> EgressPolicy:
        """The policy from the deployment's settings (the allowlist as its comma list)."""
        names, networks = parse_allowlist(allowed)
        endpoints: set[tuple[str, int]] = set()
        if default_endpoint_url:
            parts = urlsplit(default_endpoint_url)
            if parts.hostname:
                port = parts.port or (443 if parts.scheme == "https" else 80)
                endpoints.add((normalized_host(parts.hostname), port))
        return cls(
            mode=mode,
            allowed_hosts=names,
            allowed_networks=networks,
            allowed_endpoints=frozenset(endpoints),
            max_answer_bytes=max_answer_bytes,
            deadline_s=deadline_s,
            max_per_host=max_per_host,
        )

    def _allows_internal(self, host: str, port: int, address: IPAddress) -> bool:
        if self.mode == "embedded":
            return True
        name = normalized_host(host)
        return (
            name in self.allowed_hosts
            or (name, port) in self.allowed_endpoints
            or any(embedded_ipv4(address) in net or address in net for net in self.allowed_networks)
        )

    def _refused_internal(self, host: str) -> str:
        return (
            f"{host} is a private, loopback or internal address, and this server only "
            "connects to those its operator allowed (ENDPOINT_ALLOWED_HOSTS)"
        )

    def url_problem(self, url: str) -> str | None:
        """`url_problem`, then this mode's rule for a literal address (names are judged when
        connecting, by what they resolve to)."""
        problem = url_problem(url)
        if problem is not None:
            return problem
        parts = urlsplit(url)
        host = parts.hostname or ""
        address = literal_address(host)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if (
            address is not None
            and classify(address) == "internal"
            and not self._allows_internal(host, port, address)
        ):
            return self._refused_internal(host)
        return None

    def admitted(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of `host` a connection may use; raises EgressRefused when any
        address it resolves to is refused (a name with one good and one bad address is a
        rebinding trick as often as not), and OSError when it does not resolve."""
        name = normalized_host(host)
        if name in METADATA_NAMES:
            raise EgressRefused(f"{host} is a cloud metadata service, which is never connected to")
        literal = literal_address(host)
        found = [literal] if literal is not None else self._resolve(host, port)
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "the name resolved to no address")
        # The never-class first, so its reason is the one given.
        for address in found:
            if classify(address) == "never":
                raise EgressRefused(
                    f"{host} resolves to {_why_never(address)}, which this server never connects to"
                )
        for address in found:
            if classify(address) == "internal" and not self._allows_internal(host, port, address):
                raise EgressRefused(self._refused_internal(host))
        return found

    def _resolve(self, host: str, port: int) -> list[IPAddress]:
        addresses = []
        for text in self.resolver(host, port):
            # getaddrinfo gives link-local IPv6 with a zone (fe80::1%eth0).
            address = literal_address(text)
            if address is None:
                raise EgressRefused(f"{host} resolved to something that is not an address")
            addresses.append(address)
        return addresses


EMBEDDED = EgressPolicy()


# --- the deadline -----------------------------------------------------------------------------

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "egress_deadline", default=None
)


@dataclass
class Deadline:
    at: float

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at


@contextmanager
def request_deadline(seconds: float) -> Iterator[Deadline]:
    """Every connect, read and write of the requests made inside waits at most until
    `seconds` from now. httpx's own timeouts are per operation; this is their total. The
    context is the calling thread's, where httpx's sync client does its I/O."""
    deadline = Deadline(time.monotonic() + seconds)
    token = _deadline.set(deadline.at)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    at = _deadline.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the request's total time ran out")
    return left if timeout is None else min(timeout, left)


# --- the transport ----------------------------------------------------------------------------


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PolicyBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy admitted, resolved here, never by the socket."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._policy.admitted(host, port)
        except OSError as error:  # the name does not resolve
            raise httpcore.ConnectError(str(error)) from error
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=_bounded(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error  # the next address may answer, as socket.create_connection does
                continue
            return _DeadlineStream(stream)
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise EgressRefused("requests on a user's behalf never use Unix sockets")


class EgressTransport(httpx.HTTPTransport):
    """httpx's own transport, its connections made through the policy.

    httpx takes no network backend as a parameter, so its connection pool is built again
    with the same settings and the policy's backend. Environment proxies are not used: a
    transport given to httpx.Client turns them off, and a proxy would connect where the
    policy cannot see.
    """

    def __init__(self, policy: EgressPolicy, *, limits: httpx.Limits) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PolicyBackend(policy),
        )
