"""The SSRF guard: Slack, webhook and Apprise notifications may only reach public addresses.

A tenant chooses where these notifications go, and sees the receiver's answer in the channel's error, so
unless PULSE_WEBHOOK_ALLOW_PRIVATE they may only reach public addresses (`is_public_address`). Three
checks, all built on that one function: `names_internal_host` refuses, at save, a target whose host is
`localhost` or a non-public IP in any spelling (`2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]`); before
each send, `refuse_internal_host` resolves the host names and every address must be public; and while
sending, `public_peers_only` checks the address each socket actually connects or sends to (a DNS answer
that changed since, or an address an Apprise plugin derives in its own way).
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import socket
import threading
from urllib.parse import urlsplit

from django.conf import settings

from alerts.transports import base
from alerts.transports.base import TransportError

ALLOW_PRIVATE_HINT = "set PULSE_WEBHOOK_ALLOW_PRIVATE=on to allow receivers on a private network"
INTERNAL_RECEIVER = (
    "{what}: the receiver's host resolves to a private or internal address; refused (" + ALLOW_PRIVATE_HINT + ")"
)
INTERNAL_TARGET = "{what} URLs may not point at private or internal addresses (" + ALLOW_PRIVATE_HINT + ")."


def post_guarded(url: str, *, what: str, secrets: tuple[str, ...], json_body=None, data=None, headers=None) -> None:
    """POST to a tenant's receiver through every guard; a TransportError unless it answers 2xx."""
    import requests  # imported when used: runchecks starts without the HTTP stack

    refuse_internal_receiver(url, what=what)
    with public_peers_only() as guard:
        try:
            with requests.Session() as session:
                response = session.post(
                    url,
                    json=json_body,
                    data=data,
                    headers={"User-Agent": base.USER_AGENT, **(headers or {})},
                    timeout=base.TIMEOUT_SECONDS,
                    allow_redirects=False,
                )
        except requests.RequestException as exc:
            if guard.refused:
                raise TransportError(INTERNAL_RECEIVER.format(what=what), permanent=True) from None
            if isinstance(exc, requests.Timeout):
                raise TransportError(f"{what}: no answer within {base.TIMEOUT_SECONDS:g} s") from None
            if isinstance(exc, requests.ConnectionError):
                raise TransportError(f"{what}: could not connect to the receiver") from None
            # InvalidURL, MissingSchema, InvalidHeader...: the stored target is unusable.
            raise TransportError(f"{what}: invalid request ({type(exc).__name__})", permanent=True) from None
    if 200 <= response.status_code < 300:
        return
    detail = base.scrub(response.text[:200], secrets)
    message = f"{what}: receiver answered HTTP {response.status_code}" + (f": {detail}" if detail else "")
    transient = response.status_code == 429 or response.status_code >= 500
    raise TransportError(message, permanent=not transient)


def refuse_internal_receiver(url: str, *, what: str) -> None:
    """Before sending: every address the URL's host resolves to must be public."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TransportError(f"{what}: invalid request (malformed port)", permanent=True) from None
    refuse_internal_host(parts.hostname, port=port, what=what)


def refuse_internal_host(host: str | None, *, port: int | None, what: str) -> None:
    """Unless PULSE_WEBHOOK_ALLOW_PRIVATE, every address `host` resolves to must be public."""
    if settings.PULSE_WEBHOOK_ALLOW_PRIVATE:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError, ValueError):
        raise TransportError(f"{what}: could not resolve the receiver's host name") from None
    if not all(is_public_address(address) for address in addresses):
        raise TransportError(INTERNAL_RECEIVER.format(what=what), permanent=True)


class InternalPeer(OSError):
    """A socket was about to reach a non-public address inside `public_peers_only`. An OSError, so that
    HTTP and mail libraries treat it as the failed connection it is; `guard.refused` tells it apart."""


class _PeerGuard:
    refused = False


_peer_guard: contextvars.ContextVar[_PeerGuard | None] = contextvars.ContextVar("pulse_peer_guard", default=None)
_socket_methods_lock = threading.Lock()


@contextlib.contextmanager
def public_peers_only():
    """Inside this block (and in threads started with a copy of its context, as Apprise's are), unless
    PULSE_WEBHOOK_ALLOW_PRIVATE, a socket may only connect or send to public addresses.

    The check runs in `socket.socket.connect`/`connect_ex`/`sendto`, on the address about to be used:
    it holds whatever library opens the connection and whatever the DNS answered a moment earlier.
    A refused attempt raises InternalPeer and sets `refused` on the yielded guard.
    """
    _install_socket_guard()
    guard = _PeerGuard()
    token = _peer_guard.set(guard)
    try:
        yield guard
    finally:
        _peer_guard.reset(token)


def _install_socket_guard() -> None:
    """Wrap the socket methods once per process; outside `public_peers_only` they behave as before."""
    with _socket_methods_lock:
        if getattr(socket.socket.connect, "pulse_guarded", False):
            return
        connect, connect_ex, sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto

        def guarded_connect(sock, address):
            return connect(sock, _checked_peer(sock, address))

        def guarded_connect_ex(sock, address):
            return connect_ex(sock, _checked_peer(sock, address))

        def guarded_sendto(sock, data, *flags_and_address):
            *flags, address = flags_and_address
            return sendto(sock, data, *flags, _checked_peer(sock, address))

        guarded_connect.pulse_guarded = True
        socket.socket.connect = guarded_connect
        socket.socket.connect_ex = guarded_connect_ex
        socket.socket.sendto = guarded_sendto


def _checked_peer(sock: socket.socket, address):
    """The address to use: unchanged outside a guard, else resolved here (a name passed straight to
    connect would be resolved again by the C library) and refused unless every result is public."""
    guard = _peer_guard.get()
    if guard is None or settings.PULSE_WEBHOOK_ALLOW_PRIVATE:
        return address
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        guard.refused = True
        raise InternalPeer("only internet sockets may be used while sending notifications")
    host, port = address[0], address[1]
    resolved = [info[4] for info in socket.getaddrinfo(host, port, sock.family, sock.type)]
    if not resolved or not all(is_public_address(peer[0]) for peer in resolved):
        guard.refused = True
        raise InternalPeer("refused to reach a private or internal address")
    return resolved[0]


# IPv6 prefixes whose last 32 bits are an IPv4 address the packets end up at: IPv4-compatible (deprecated)
# and the NAT64 well-known and local-use prefixes. (IPv4-mapped and 6to4 have their own properties.)
_IPV4_EMBEDDING_NETWORKS = tuple(ipaddress.ip_network(net) for net in ("::/96", "64:ff9b::/96", "64:ff9b:1::/48"))


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast IP address (an IPv6 address embedding an IPv4 one, such as
    ::ffff:127.0.0.1, judged as that IPv4 address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None or ip.sixtofour is not None:
            ip = ip.ipv4_mapped or ip.sixtofour
        elif any(ip in network for network in _IPV4_EMBEDDING_NETWORKS):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast


def names_internal_host(hostname: str) -> bool:
    """localhost, or an IP address that is not public, in any spelling the resolver accepts (2130706433,
    0x7f.1, 127.1 are 127.0.0.1). Other names are resolved when sending."""
    host = hostname.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not is_public_address(host)
    except ValueError:
        pass
    try:
        return not is_public_address(socket.inet_ntoa(socket.inet_aton(host)))
    except (OSError, UnicodeError, ValueError):
        return False
