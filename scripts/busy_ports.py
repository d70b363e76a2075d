"""Which processes listen on the given TCP ports (Linux /proc; standard library only).

    python scripts/busy_ports.py 8080 5005 5006

prints one line per busy port, "PORT PID COMMAND" (PID "?" when the process is
not ours to see), and exits 1 when any port is busy, 0 when all are free.
`./polku start` uses it to say what holds a port (often a process left from
an earlier start that was killed) instead of failing later on a busy port.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

_LISTEN = "0A"


def _listening_inodes(ports: set[int]) -> dict[str, int]:
    """socket inode -> port, for the sockets listening on one of ``ports``."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if port in ports:
                inodes[fields[9]] = port
    return inodes


def _owner_pids(inodes: dict[str, int]) -> dict[int, int]:
    """port -> pid of a process holding one of the sockets."""
    owners: dict[int, int] = {}
    wanted = {f"socket:[{inode}]": port for inode, port in inodes.items()}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    port = wanted.get(os.readlink(fd.path))
                except OSError:
                    continue
                if port is not None:
                    owners.setdefault(port, int(entry.name))
    return owners


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:160] or "?"


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def busy(ports: list[int]) -> list[tuple[int, int | None, str]]:
    """(port, pid or None, command) of each busy port."""
    inodes = _listening_inodes(set(ports))
    owners = _owner_pids(inodes) if inodes else {}
    result = []
    for port in ports:
        if port in inodes.values() or _answers(port):
            pid = owners.get(port)
            result.append((port, pid, _command(pid) if pid else "?"))
    return result


def main(argv: list[str]) -> int:
    ports = [int(p) for p in argv]
    found = busy(ports)
    for port, pid, command in found:
        print(port, pid if pid is not None else "?", command)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
