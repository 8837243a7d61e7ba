"""Which servers a customer connection may reach, checked when a connection is saved and at every connect.

A connection's host is resolved once, the way libpq resolves it (getaddrinfo), and every address it resolves
to is vetted: never Pulse's own database server, never a local socket or a list of hosts, and no loopback,
link-local, unspecified or own address of this machine unless the operator sets
`PULSE_CONNECTION_ALLOW_LOCAL`; `PULSE_CONNECTION_ALLOWED_NETWORKS` narrows targets further. The session then
connects to the vetted address (libpq `hostaddr`), so a DNS answer cannot change between the check and the
connect, and without any of the ambient credentials of Pulse's own process (pgpass, client certificates,
Kerberos tickets).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

from django.conf import settings
from psycopg import pq

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORT = 5432
# "This network" (0.0.0.0/8): Linux connects 0.0.0.0 to this machine.
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
# libpq options that would otherwise pick up credentials of Pulse's own process for a customer's server:
# a password file (~/.pgpass or PGPASSFILE; this path can never exist, and a service file's password is
# overridden because Pulse always passes one), a client certificate and key (~/.postgresql/postgresql.crt),
# GSSAPI encryption and credential delegation, and any authentication method but the password-based ones
# (Kerberos/SSPI would present the process's own tickets). Options the linked libpq lacks are left out
# (sslcertmode, require_auth and gssdelegation need libpq 16; psycopg's wheels bundle a newer one).
_NOWHERE = "/dev/null/pulse-none"
_WANTED_NO_AMBIENT_CREDENTIALS = {
    "passfile": _NOWHERE,
    "sslcert": _NOWHERE,
    "sslkey": _NOWHERE,
    "sslcertmode": "disable",
    "gssencmode": "disable",
    "gssdelegation": "0",
    "require_auth": "password,md5,scram-sha-256,none",
}
_LIBPQ_OPTIONS = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
NO_AMBIENT_CREDENTIALS = {k: v for k, v in _WANTED_NO_AMBIENT_CREDENTIALS.items() if k in _LIBPQ_OPTIONS}
_CONNINFO_PREFIXES = ("postgres://", "postgresql://")
_SIOCGIFADDR = 0x8915


class TargetRefused(Exception):
    """The target may not be reached; the message is safe to show to the tenant."""


def name_problem(value: str, *, what: str) -> str | None:
    """A database or user name must be a plain name: never a conninfo string or URI that could redirect libpq."""
    if "=" in value or value.lower().startswith(_CONNINFO_PREFIXES):
        return f"{what} must be a plain name, not a connection string"
    return None


def _plain(address: IPAddress) -> IPAddress:
    """IPv4 written as IPv6 (::ffff:a.b.c.d, ::a.b.c.d) is the IPv4 address it reaches."""
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if int(address) >> 32 == 0 and int(address) > 1:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _address(text: str) -> IPAddress:
    return _plain(ipaddress.ip_address(text.split("%", 1)[0]))


def _resolve(host: str, port: int) -> list[tuple[IPAddress, str]]:
    """Every address `host` resolves to, as libpq would resolve it: (vetted form, text to connect to)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return []
    seen: dict[str, IPAddress] = {}
    for *_, sockaddr in infos:
        seen.setdefault(sockaddr[0], _address(sockaddr[0]))
    return [(address, text) for text, address in seen.items()]


def own_addresses() -> set[IPAddress]:
    """This machine's interface addresses (Linux; elsewhere none are found and loopback rules still apply)."""
    found: set[IPAddress] = set()
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            found.add(_plain(ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))))
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            found.add(ipaddress.IPv4Address(answer[20:24]))
    return found


def is_this_machine(address: IPAddress) -> bool:
    """Loopback, unspecified ("this network"), or one of this machine's own addresses."""
    address = _plain(address)
    if address.is_loopback or address.is_unspecified:
        return True
    if address.version == 4 and address in _THIS_NETWORK:
        return True
    return address in own_addresses()


def is_local(address: IPAddress) -> bool:
    """This machine, or a link-local address (e.g. a cloud metadata service at 169.254.169.254)."""
    return _plain(address).is_link_local or is_this_machine(address)


def _is_socket_path(host: str) -> bool:
    return host.startswith(("/", "@"))


def is_pulse_database(address: IPAddress, port: int) -> bool:
    """Whether `address:port` reaches Pulse's own database server (any database on it)."""
    own = settings.DATABASES["default"]
    pulse_port = int(own.get("PORT") or DEFAULT_PORT)
    if port != pulse_port:
        return False
    pulse_host = str(own.get("HOST") or "")
    if not pulse_host or _is_socket_path(pulse_host):
        return is_this_machine(address)  # a socket: the server runs here and may also listen on its addresses
    pulse_addresses = {resolved for resolved, _ in _resolve(pulse_host, pulse_port)}
    if any(is_this_machine(resolved) for resolved in pulse_addresses) and is_this_machine(address):
        return True
    return _plain(address) in pulse_addresses


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.PULSE_CONNECTION_ALLOWED_NETWORKS]


def address_problem(address: IPAddress, port: int) -> str | None:
    """Why a connection may not go to `address:port`, or None."""
    if is_pulse_database(address, port):
        return "this host and port are Pulse's own database server, which is never a connection target"
    if is_local(address) and not settings.PULSE_CONNECTION_ALLOW_LOCAL:
        return (
            "the host resolves to a local address (loopback, link-local, unspecified or this machine's own), "
            "which is not a connection target unless the operator sets PULSE_CONNECTION_ALLOW_LOCAL=on"
        )
    networks = _allowed_networks()
    if networks and not any(address in network for network in networks if network.version == address.version):
        return "the host resolves to an address outside the networks this Pulse may reach"
    return None


def target_address(*, host: str, port: int) -> str:
    """Resolve `host` once, vet every address it resolves to, and return the address to connect to.

    Raises TargetRefused naming the problem. The answer is meant for libpq's `hostaddr`.
    """
    host = (host or "").strip()
    if not host:
        raise TargetRefused("a host name or IP address is required")
    if _is_socket_path(host):
        raise TargetRefused("a local socket path is not a connection target: give a host name or IP address")
    if "," in host:
        raise TargetRefused("give one host: a list of hosts is not a connection target")
    addresses = _resolve(host, port)
    if not addresses:
        raise TargetRefused("the host name cannot be resolved")
    for address, _ in addresses:
        problem = address_problem(address, port)
        if problem:
            raise TargetRefused(problem)
    return addresses[0][1]


def target_problem(*, host: str, port: int) -> str | None:
    """Why `host:port` may not be a connection target, or None (the save-time check)."""
    try:
        target_address(host=host, port=port)
    except TargetRefused as exc:
        return str(exc)
    return None


def vetted_conninfo(conninfo: dict) -> dict:
    """libpq parameters that reach only the vetted address of `conninfo`, without ambient credentials.

    Raises TargetRefused when the target or its names are not allowed.
    """
    for key, what in (("dbname", "database"), ("user", "username")):
        problem = name_problem(conninfo.get(key) or "", what=what)
        if problem:
            raise TargetRefused(problem)
    port = int(conninfo.get("port") or DEFAULT_PORT)
    address = target_address(host=conninfo.get("host") or "", port=port)
    return {
        **conninfo,
        "port": port,
        "hostaddr": address,
        "password": conninfo.get("password") or "",
        **NO_AMBIENT_CREDENTIALS,
    }
