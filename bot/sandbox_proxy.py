"""The sandbox's one way out under `ARCHON_SANDBOX_NETWORK=packages`: an allow-listing CONNECT proxy.

It runs in the worker, outside the sandbox, listening on a unix socket that is the only thing mounted into
the sandbox's otherwise empty network world (`sandbox_bridge.py` turns it into `127.0.0.1:3128` inside).
It tunnels `CONNECT host:port` only to the configured package indexes, on port 443 unless an entry names its
own port (`host:port`), and only to public addresses when the entry is a name, so a DNS answer cannot point
it at the worker's loopback (Redis) or the private network. Everything else gets a 403 that says why.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import socketserver
import threading
from collections.abc import Sequence
from pathlib import Path

from bot.sandbox_bridge import splice

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16384
CONNECT_TIMEOUT_S = 30.0


class ProxyRefusal(Exception):
    """A request the proxy will not forward; the message is the 403's body."""


def allowed_target(target: str, hosts: Sequence[str]) -> tuple[str, int]:
    """(host, port) of a CONNECT target the allow list admits; `ProxyRefusal` otherwise. Pure."""
    host, sep, port_text = target.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ProxyRefusal(f"{target!r} is not host:port")
    host, port = host.strip("[]").lower(), int(port_text)
    for entry in hosts:
        name, _, entry_port = entry.lower().partition(":")
        wanted_port = int(entry_port) if entry_port.isdigit() else 443
        if port == wanted_port and (host == name or (name.startswith("*.") and host.endswith(name[1:]))):
            return host, port
    raise ProxyRefusal(
        f"{target} is not an allowed package index (ARCHON_SANDBOX_PACKAGE_HOSTS: {', '.join(hosts)})"
    )


def _is_literal(host: str) -> bool:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    return False


#: Where the machine's own services live: an allowed *name* never leads there. (Not `is_global`: package
#: registries are sometimes served from reserved ranges by the operator's gateway, which is fine.)
INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)


def is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in INTERNAL_NETWORKS if net.version == ip.version)


def resolve_public(host: str, port: int) -> list[tuple]:
    """Addresses for a named host, refusing any on loopback, link-local or a private network: an allowed
    name must not become a way to the machine's own services (DNS answers are not ours to trust)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    bad = [info[4][0] for info in infos if is_internal(info[4][0])]
    if bad:
        raise ProxyRefusal(f"{host} resolves to an internal address ({bad[0]})")
    return infos


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            target = self._request_target()
            upstream = self._open(target)
        except ProxyRefusal as refusal:
            log.info("sandbox proxy refused: %s", refusal)
            self._reply(403, str(refusal))
            return
        except OSError as exc:
            self._reply(502, f"could not reach the package index: {exc}")
            return
        with upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            splice(self.connection, upstream)

    def _request_target(self) -> str:
        lines = []
        size = 0
        while True:
            line = self.rfile.readline(MAX_HEADER_BYTES)
            size += len(line)
            if not line or line in (b"\r\n", b"\n") or size > MAX_HEADER_BYTES:
                break
            lines.append(line)
        parts = lines[0].decode("latin-1").split() if lines else []
        if len(parts) != 3 or parts[0] != "CONNECT":
            raise ProxyRefusal("only CONNECT to an allowed package index is forwarded")
        return parts[1]

    def _open(self, target: str) -> socket.socket:
        host, port = allowed_target(target, self.server.hosts)
        if _is_literal(host):
            return socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        for family, kind, proto, _, address in resolve_public(host, port):
            with contextlib.suppress(OSError):
                sock = socket.socket(family, kind, proto)
                sock.settimeout(CONNECT_TIMEOUT_S)
                sock.connect(address)
                sock.settimeout(None)
                return sock
        raise OSError(f"no address of {host} answered")

    def _reply(self, status: int, text: str) -> None:
        reason = {403: "Forbidden", 502: "Bad Gateway"}[status]
        body = f"archon sandbox: {text}\n".encode()
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        with contextlib.suppress(OSError):
            self.wfile.write(head.encode() + body)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    hosts: tuple[str, ...] = ()


class AllowlistProxy:
    """One command's proxy: started before the sandbox, stopped after it."""

    def __init__(self, socket_path: Path, hosts: Sequence[str]) -> None:
        self.socket_path = Path(socket_path)
        self._server = _Server(str(self.socket_path), _Handler)
        self._server.hosts = tuple(hosts)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
