"""One registry writer at a time per registered model, wherever the store lives: a `flock`
next to a SQLite or file store (released by the kernel when the holder dies); on a server,
creating the registered model `<name>.lock` is the compare-and-set, and a lock whose holder
is gone (same host) or older than `stale_after` is broken, so a killed run blocks nobody.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

LOCK_SUFFIX = ".lock"


def store_lock_file(tracking_uri: str) -> Path | None:
    """The lock file next to a SQLite or file store; None for a server or database."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        database = tracking_uri.split(":///", 1)[-1] if ":///" in tracking_uri else parsed.path
        return Path(database).with_name(Path(database).name + ".registry.lock")
    if parsed.scheme in ("", "file"):
        return Path(parsed.path or tracking_uri) / ".registry.lock"
    return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _is_stale(holder: dict[str, object], stale_after: float) -> bool:
    if time.time() - float(holder.get("since", 0)) > stale_after:
        return True
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


@contextlib.contextmanager
def _model_lock(client: MlflowClient, name: str, stale_after: float) -> Iterator[None]:
    lock = f"{name}{LOCK_SUFFIX}"
    me = _holder()
    while True:
        try:
            client.create_registered_model(
                lock,
                tags={"holder": json.dumps(me)},
                description=f"registry lock of '{name}' (visprompt); deleted when released",
            )
            break
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            holder = json.loads(client.get_registered_model(lock).tags.get("holder", "{}"))
            if _is_stale(holder, stale_after):
                client.delete_registered_model(lock)
                continue
        except MlflowException:
            continue  # released meanwhile
        time.sleep(0.5)
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(lock)


@contextlib.contextmanager
def registry_lock(name: str, stale_after: float = 1800.0) -> Iterator[None]:
    """Exclusive lock around one registry write step of the registered model `name`."""
    file = store_lock_file(mlflow.get_tracking_uri())
    if file is not None:
        with _file_lock(file):
            yield
    else:
        with _model_lock(MlflowClient(), name, stale_after):
            yield
