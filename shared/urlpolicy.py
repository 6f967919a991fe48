"""Which source URLs Lookout may open: one policy for the API and the producer supervisor.

The API checks a URL before accepting it, lexically: it never touches the filesystem or the
network for a source, since the capture runs on the supervisor's host. The supervisor checks
again before connecting, with `resolve=True`: file paths after `Path.resolve()` (symlinks),
host names after DNS (it then connects to an address it checked), and every HTTP redirect.

Defaults, thought through for cameras on a home or office LAN: private addresses (10/8,
192.168/16, fc00::/7, ...) are allowed (SOURCE_ALLOW_PRIVATE); this host's own loopback is
refused (SOURCE_ALLOW_LOOPBACK) since Redis and the API listen there; link-local, cloud
metadata, unspecified, multicast and reserved addresses are always refused. An IPv4 address
is recognised in every spelling the C resolver accepts (decimal, hex, octal, short forms) and
inside IPv6 (mapped, compatible, 6to4, NAT64). Messages name the rule and never say whether a
file exists or a port is open.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shared.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
DEVICE_PATH = re.compile(r"^/dev/video(\d{1,3})$")
DEVICE_INDEX = re.compile(r"^\d{1,3}$")
_HOST_CHARS = re.compile(r"^[a-z0-9._:-]+$")
_NUMERIC_V4 = re.compile(r"^[0-9a-fx.]+$")  # what inet_aton may read as an IPv4 address
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data"})
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


class SourcePolicyError(ValueError):
    """A source URL the policy refuses; `rule` names the rule (scheme, file-root, host,
    loopback, link-local, metadata, private, unspecified, multicast, reserved)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"refused by the source policy ({rule}): {message}")
        self.rule = rule


@dataclass(frozen=True)
class SourcePolicy:
    """What sources may be opened; built from the settings with `from_settings`."""

    schemes: frozenset[str]
    file_roots: tuple[str, ...]
    allow_private: bool = True
    allow_loopback: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SourcePolicy:
        return cls(
            schemes=frozenset(split_list(settings.source_schemes)),
            file_roots=tuple(split_list(settings.source_file_roots)),
            allow_private=settings.source_allow_private,
            allow_loopback=settings.source_allow_loopback,
        )


@dataclass(frozen=True)
class CheckedSource:
    """A URL the policy allows: `path` of a file (resolved when checked with resolve=True),
    `host`/`addresses` of a network source (addresses only after resolution)."""

    scheme: str
    path: str = ""
    host: str = ""
    addresses: tuple[str, ...] = ()


def split_list(value: str) -> list[str]:
    """The non-empty items of a comma-separated setting."""
    return [item.strip() for item in value.split(",") if item.strip()]


def source_scheme(url: str) -> str:
    """The policy's name for how `url` is opened: device, file, or its URL scheme."""
    if DEVICE_PATH.fullmatch(url) or DEVICE_INDEX.fullmatch(url):
        return "device"
    if "://" not in url:
        return "file"
    return urlsplit(url).scheme.lower()


def check_source_url(url: str, policy: SourcePolicy, *, resolve: bool = False) -> CheckedSource:
    """Raise SourcePolicyError unless `policy` allows `url`; what was checked otherwise.

    Lexical by default (the API). With `resolve` (the supervisor, before connecting): file
    paths are compared after `Path.resolve()`, host names after DNS resolution, and every
    address they resolve to must pass.
    """
    scheme = source_scheme(url)
    if scheme not in policy.schemes:
        allowed = ", ".join(sorted(policy.schemes)) or "none"
        raise SourcePolicyError(
            "scheme", f"{scheme!r} sources are not allowed (SOURCE_SCHEMES: {allowed})"
        )
    if scheme == "device":
        return CheckedSource(scheme)
    if scheme == "file":
        parts = urlsplit(url) if "://" in url else None
        if parts is not None and parts.netloc not in ("", "localhost"):
            raise SourcePolicyError("file-root", "file:// URLs name no host")
        return CheckedSource(
            scheme, path=check_file_path(parts.path if parts else url, policy, resolve=resolve)
        )
    parts = urlsplit(url)
    host = check_host(parts.hostname or "", policy)
    if not resolve:
        return CheckedSource(scheme, host=host)
    port = parts.port or DEFAULT_PORTS.get(scheme, 80)
    return CheckedSource(scheme, host=host, addresses=resolve_host(host, port, policy))


def check_file_path(path: str, policy: SourcePolicy, *, resolve: bool) -> str:
    """`path` made absolute if it lies under one of SOURCE_FILE_ROOTS (after normpath, and
    after Path.resolve() with `resolve`); SourcePolicyError with one message otherwise."""
    refused = SourcePolicyError(
        "file-root",
        f"files must lie under SOURCE_FILE_ROOTS ({', '.join(policy.file_roots) or 'none'})",
    )
    if not path or "\x00" in path:
        raise refused
    if resolve:
        try:
            full, roots = (
                str(Path(path).resolve()),
                [str(Path(r).resolve()) for r in policy.file_roots],
            )
        except (OSError, RuntimeError, ValueError):
            raise refused from None
    else:
        full, roots = _absolute(path), [_absolute(r) for r in policy.file_roots]
    if not any(full.startswith(root.rstrip(os.sep) + os.sep) for root in roots):
        raise refused
    return full


def _absolute(path: str) -> str:
    # Lexical only: no symlink is followed and nothing is looked up on disk.
    return os.path.normpath(os.path.join(os.getcwd(), path))


def check_host(host: str, policy: SourcePolicy) -> str:
    """`host` without a trailing dot if its name or literal address is allowed."""
    name = host.lower().removesuffix(".")
    if not name or not _HOST_CHARS.fullmatch(name):
        raise SourcePolicyError(
            "host", f"{host!r} is not a host name or IP address Lookout accepts"
        )
    if name == "localhost" or name.endswith(".localhost"):
        if not policy.allow_loopback:
            raise SourcePolicyError("loopback", f"{host!r} is this host (SOURCE_ALLOW_LOOPBACK)")
        return name
    if name in METADATA_NAMES or name.startswith("metadata."):
        raise SourcePolicyError("metadata", f"{host!r} is a cloud metadata service")
    literal = parse_ip(name)
    if literal is not None:
        check_address(literal, policy)
    return name


def parse_ip(host: str) -> IpAddress | None:
    """The address `host` spells, in any form the resolver accepts, or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_V4.fullmatch(host) and not host.endswith("."):
        try:  # 2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 127.1 ...
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_address(address: IpAddress, policy: SourcePolicy) -> None:
    """SourcePolicyError if `address`, or an IPv4 address inside it, is refused."""
    for candidate in _with_embedded_v4(address):
        _check_one(candidate, policy)


def _with_embedded_v4(address: IpAddress) -> list[IpAddress]:
    # Mapped, compatible and NAT64 addresses reach the IPv4 address inside them: only that
    # one counts. A 6to4 address is checked as itself and as its IPv4 relay.
    if isinstance(address, ipaddress.IPv4Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address, address.sixtofour]
    return [address]


def _check_one(ip: IpAddress, policy: SourcePolicy) -> None:
    rule = _rule_for(ip, policy)
    if rule is not None:
        hint = {"loopback": " (SOURCE_ALLOW_LOOPBACK)", "private": " (SOURCE_ALLOW_PRIVATE)"}
        raise SourcePolicyError(rule, f"{ip} is in the {rule} range{hint.get(rule, '')}")


def _rule_for(ip: IpAddress, policy: SourcePolicy) -> str | None:
    if ip in METADATA_ADDRESSES:
        return "metadata"
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "unspecified"
    if ip.is_loopback:
        return None if policy.allow_loopback else "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global and not policy.allow_private:
        return "private"
    return None


def resolve_host(host: str, port: int, policy: SourcePolicy) -> tuple[str, ...]:
    """Every address `host` resolves to, each checked; OSError when it does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        check_address(address, policy)
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise OSError(f"{host} has no address")
    return tuple(addresses)


def with_address(url: str, address: str) -> str:
    """`url` with its host replaced by the checked `address`, so nothing resolves it again."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()
