"""A real PostgreSQL server for a test: initdb in a temp dir, started on a free local port, stopped
(and its files removed) afterwards. Needs PostgreSQL's server binaries (``initdb``, ``pg_ctl``) on
PATH or in /usr/lib/postgresql/*/bin; :func:`server_binaries` says why not when they are missing.
As root (initdb refuses to run as root) the server runs as the ``postgres`` user, else ``nobody``."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional, Tuple


def server_binaries() -> Tuple[Optional[Path], str]:
    """The folder holding initdb and pg_ctl, or None and the reason."""
    found = shutil.which("initdb") and shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(shutil.which("initdb"))).parent, ""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(folder, "initdb"), os.X_OK) and os.access(os.path.join(folder, "pg_ctl"), os.X_OK):
            return Path(folder), ""
    return None, "PostgreSQL's server binaries (initdb, pg_ctl) are not installed (apt install postgresql)"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: List[str]) -> Tuple[List[str], Optional[str]]:
    """``command`` as the user the server runs as (root may not run it), and that user's name."""
    if os.geteuid() != 0:
        return command, None
    user = "postgres" if any(u.pw_name == "postgres" for u in pwd.getpwall()) else "nobody"
    return ["runuser", "-u", user, "--", *command], user


@contextlib.contextmanager
def postgres_server(binaries: Path) -> Iterator[str]:
    """A running server; yields its URL (``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``, no password)."""
    home = Path(tempfile.mkdtemp(prefix="seqframe-pg-"))
    data, port = home / "data", _free_port()
    _, user = _as_server_user([])
    if user is not None:
        shutil.chown(home, user)
    def run(*args: str) -> None:
        command, _ = _as_server_user([str(binaries / args[0]), *args[1:]])
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    try:
        run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        run("pg_ctl", "-D", str(data), "-o", options, "-l", str(home / "server.log"), "-w", "-t", "60", "start")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)
