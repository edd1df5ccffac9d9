"""Network helpers for start-up."""

from __future__ import annotations

import errno
import socket

import psutil

from service.errors import ConfigError


def ensure_port_free(host: str, port: int) -> None:
    """Fail early, naming the process that holds the port, instead of a uvicorn traceback."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
            raise ConfigError(
                f"port {port} on {host} is already in use{_holder(port)}: stop that process or set "
                "SOUNDALIKE_SERVER_PORT (or pass --port)"
            ) from None


def _holder(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f" by pid {conn.pid} ({' '.join(proc.cmdline()[:3])})"
    except (psutil.Error, OSError):
        pass
    return ""
