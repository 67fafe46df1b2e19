"""Where the embedded databases live, and who has them open.

Default location: ``$JINA_CONNECTORS_HOME``, else ``$XDG_DATA_HOME/jina-connectors``, else
``~/.local/share/jina-connectors``; an embedded Qdrant in ``<home>/qdrant``, a Milvus Lite
database in ``<home>/milvus.db``. The same store is found from any working directory.

An embedded store (a Qdrant folder, a Milvus Lite file) can be open in one process at a
time: the database takes an exclusive file lock. Whoever opens one through a sink of this
package also writes an *owner file* beside it (pid and command line), removed on close, so
that a second process can say who holds the lock. A database server (``--location
http://...``) has no such limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from ..errors import StoreLockedError

HOME_ENV_VAR = "JINA_CONNECTORS_HOME"
QDRANT_FOLDER = "qdrant"
MILVUS_FILE = "milvus.db"
SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")


def home() -> Path:
    """The folder of the default embedded stores (absolute; not created here)."""
    configured = os.environ.get(HOME_ENV_VAR)
    if configured:
        return Path(configured).expanduser().absolute()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser().absolute() / "jina-connectors"


def default_qdrant_path() -> Path:
    return home() / QDRANT_FOLDER


def default_milvus_path() -> Path:
    return home() / MILVUS_FILE


def is_server(location: str) -> bool:
    """Whether ``location`` names a database server rather than a local store."""
    return location.startswith(SERVER_SCHEMES)


# -- owner files ---------------------------------------------------------------------------


def owner_file(lock_file: Path) -> Path:
    """The owner file written beside a store's lock file."""
    return lock_file.with_name(lock_file.name + ".owner.json")


def write_owner(lock_file: Path) -> Path:
    """Record this process as the holder of ``lock_file`` (call once the lock is held)."""
    path = owner_file(lock_file)
    record = {"pid": os.getpid(), "command": _command_line(), "since": time.time()}
    with contextlib.suppress(OSError):  # naming the holder is a courtesy, never a failure
        path.write_text(json.dumps(record), encoding="utf-8")
    return path


def remove_owner(lock_file: Path) -> None:
    """Remove this process's owner file of ``lock_file`` (another process's is left)."""
    path = owner_file(lock_file)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def holder(lock_file: Path) -> str | None:
    """Who holds ``lock_file`` per its owner file: ``"pid 42 (jina-connectors ingest docs)"``;
    None when no live process of this package recorded itself."""
    try:
        record = json.loads(owner_file(lock_file).read_text(encoding="utf-8"))
        pid = int(record["pid"])
        command = str(record.get("command", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    return f"pid {pid} ({command})" if command else f"pid {pid}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("jina-connectors", "cli.py", "__main__.py"):
        argv[0] = "jina-connectors"
    elif argv and argv[0] == "-m":
        argv[0] = "python -m"
    elif argv and argv[0] == "-c":
        argv = ["python -c ..."]
    command = " ".join(argv) or "python"
    return command if len(command) <= 200 else command[:199] + "…"


def qdrant_collections(folder: Path) -> set[str] | None:
    """The collection names an embedded Qdrant folder records in its ``meta.json``, read
    without importing qdrant-client (about a second of imports); None when the file is
    missing or not in the expected form (then only the client can tell)."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        collections = meta["collections"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(collections, dict):
        return None
    return {str(name) for name in collections}


# -- lock checks ---------------------------------------------------------------------------


def qdrant_lock_file(folder: Path) -> Path:
    return folder / ".lock"


def milvus_lock_file(db_file: Path) -> Path:
    return db_file.parent / f".{db_file.name}.lock"


def check_qdrant_unlocked(folder: Path) -> None:
    """Raise :class:`StoreLockedError` if another client holds the embedded Qdrant folder.

    Qdrant's local mode takes an exclusive ``flock`` on ``<folder>/.lock``; taking and
    releasing it here tests it without disturbing anyone (a missing lock file: unlocked).
    """
    lock_file = qdrant_lock_file(folder)
    if not lock_file.is_file():
        return
    import portalocker  # a qdrant-client dependency (it locks the folder with it)

    try:
        with lock_file.open("r+") as handle:
            try:
                portalocker.lock(
                    handle, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
                )
            except portalocker.exceptions.LockException:
                raise StoreLockedError("Qdrant", folder, holder(lock_file)) from None
            portalocker.unlock(handle)
    except OSError:
        return  # unreadable: let the database say what is wrong


def check_milvus_unlocked(db_file: Path) -> None:
    """Raise :class:`StoreLockedError` if another process runs the Milvus Lite file.

    Milvus Lite holds a POSIX record lock (``lockf``) on ``.<name>.lock`` while its server
    runs. Such locks belong to a process, and closing any descriptor of the file drops all of
    them, so this process never tests a file it serves itself.
    """
    lock_file = milvus_lock_file(db_file)
    if not lock_file.is_file() or _served_here(db_file):
        return
    import fcntl

    try:
        with lock_file.open("a") as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise StoreLockedError("Milvus Lite", db_file, holder(lock_file)) from None
            fcntl.lockf(handle, fcntl.LOCK_UN)
    except OSError:
        return


def _served_here(db_file: Path) -> bool:
    """Whether this process already runs the Milvus Lite server of ``db_file``."""
    if "milvus_lite.server_manager" not in sys.modules:
        return False
    from milvus_lite.server_manager import server_manager_instance

    servers = getattr(server_manager_instance, "_servers", {})
    return str(db_file.absolute().resolve()) in servers
