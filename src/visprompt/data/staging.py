"""A dataset version becomes current only after it validated.

Ingestion builds the next version in a sibling staging folder (`.shards.staging` beside
`shards`); `commit` writes the validation summary into it and swaps the two directories in
one atomic exchange (Linux `renameat2(RENAME_EXCHANGE)`), so manifest, shards and summary
change together or not at all. A failed or killed run leaves the current version untouched
and the staging folder to resume.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from visprompt.data import shards

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def staging_dir(final: str | Path) -> Path:
    """Where the next version of `final` is built (a sibling: same filesystem, so a rename)."""
    final = Path(final)
    return final.with_name(f".{final.name}.staging")


@contextmanager
def exclusive(directory: str | Path) -> Iterator[None]:
    """Hold the lock of a staging folder: one ingestion or commit of it at a time."""
    directory = Path(directory)
    path = directory.with_name(f"{directory.name}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"another ingestion or validation is using '{directory}' (lock {path}); "
                "wait for it to finish, then rerun"
            ) from None
        yield


def _backup_dir(final: Path) -> Path:
    return final.with_name(f".{final.name}.previous")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories; False where the OS or filesystem cannot."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"cannot swap '{a}' and '{b}': {os.strerror(code)}")


def recover(final: str | Path) -> None:
    """Finish a swap interrupted between its two renames (only where no exchange exists)."""
    final = Path(final)
    backup = _backup_dir(final)
    if backup.exists() and not final.exists():
        backup.rename(final)
    elif backup.exists():
        shutil.rmtree(backup)


def version_to_validate(final: str | Path) -> Path:
    """The version data validation checks: the staged one when ingestion left a complete one,
    else the current one (validated again in place, e.g. under new rules: `kedro run
    --pipelines data_validation` after a finished ingestion)."""
    final = Path(final)
    staged = staging_dir(final)
    if (staged / shards.INFO).is_file():
        return staged
    recover(final)
    if (final / shards.INFO).is_file():
        return final
    raise FileNotFoundError(
        f"nothing to validate: no dataset in {final} and no finished ingestion in {staged}; "
        "run `kedro run --pipelines data_ingestion` first"
    )


def commit(final: str | Path, summary: Mapping[str, Any]) -> None:
    """Write `summary` into the staged version and make it the current one at `final` (the
    replaced one is deleted); with nothing staged, `summary` is the current version's own,
    validated again. Refuses a summary that failed or describes other data."""
    final = Path(final)
    staged = staging_dir(final)
    with exclusive(staged):
        if version_to_validate(final) == final:
            _confirm(final, summary)
        else:
            _commit(final, staged, summary)


def _confirm(final: Path, summary: Mapping[str, Any]) -> None:
    """The current version passed again: its summary is rewritten only if it changed (the
    shards, and the DVC-tracked folder, stay as they are)."""
    shards.require_validated(final, summary)
    path = final / shards.SUMMARY
    if not path.is_file() or json.loads(path.read_text()) != dict(summary):
        shards.write_json(path, dict(summary))


def _commit(final: Path, staged: Path, summary: Mapping[str, Any]) -> None:
    if not (staged / shards.INFO).is_file():
        raise FileNotFoundError(
            f"no complete staged dataset in {staged}; run `kedro run --pipelines "
            "data_ingestion,data_validation`"
        )
    shards.require_validated(staged, summary)
    shards.write_json(staged / shards.SUMMARY, dict(summary))
    shutil.rmtree(staged / shards.WORK, ignore_errors=True)
    recover(final)
    if not final.exists():
        staged.rename(final)
        return
    if _exchange(staged, final):
        shutil.rmtree(staged)
        return
    backup = _backup_dir(final)
    final.rename(backup)
    staged.rename(final)
    shutil.rmtree(backup)


def read_summary(final: str | Path) -> dict[str, Any]:
    """The validation summary of the current version at `final`."""
    final = Path(final)
    recover(final)
    path = final / shards.SUMMARY
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: no validated dataset yet; run `kedro run --pipelines "
            "data_ingestion,data_validation`"
        )
    return json.loads(path.read_text())
