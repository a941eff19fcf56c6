"""Make a copied SQLite tracking store (database + artifact folder) usable at its new path.

MLflow's SQLite store records artifact locations as absolute paths, so a copy on a
deployment host fails to load `models:/NAME@champion` (or reads the old folder). `relocate`
rewrites every location under the old store folder to the same relative path under the
copy's, on a scratch copy of the database; it commits (writes the copy back) only when every
registered version's folder exists in the copy and each registered model's champion (or
latest version) loads from the rewritten store. A team server needs none of this
(`mlflow-artifacts:/`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

FILE_SCHEME = "file://"
SQLITE_SCHEME = "sqlite:///"


def sqlite_path(tracking_uri: str) -> Path:
    """The database file of a `sqlite:///...` tracking URI; refuse any other store."""
    if not tracking_uri.startswith(SQLITE_SCHEME):
        raise ValueError(
            f"relocate works on a copied SQLite store (sqlite:////abs/path/mlflow.db); got "
            f"{tracking_uri!r}. A tracking server needs no relocation: point "
            "MLFLOW_TRACKING_URI at it"
        )
    # SQLAlchemy's form: sqlite:///relative/path (to the cwd) or sqlite:////absolute/path;
    # resolved here, so no relative path reaches a rewritten location
    path = Path(unquote(tracking_uri.removeprefix(SQLITE_SCHEME))).resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} (from {tracking_uri!r}, cwd {Path.cwd()}) does not exist: copy the "
            "store's mlflow.db there first, or give an absolute sqlite:////path/mlflow.db"
        )
    return path


def _text_columns(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """(table, column) of every text column of the store's tables."""
    tables = [r[0] for r in db.execute("select name from sqlite_master where type = 'table'")]
    return [
        (table, row[1])
        for table in tables
        for row in db.execute(f'pragma table_info("{table}")')
        if any(t in str(row[2]).upper() for t in ("CHAR", "TEXT", "CLOB"))
    ]


def _missing_versions(db: sqlite3.Connection) -> list[str]:
    """`name/version: folder` of every registered version whose folder is not on disk."""
    rows = db.execute("select name, version, storage_location from model_versions")
    return [
        f"{name}/{version}: {location}"
        for name, version, location in rows
        if location and "://" not in location and not Path(location).is_dir()
    ]


@contextlib.contextmanager
def _store(uri: str) -> Iterator[None]:
    """MLflow's tracking URI (and so its registry's) set to `uri`; the caller's restored."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    before = mlflow.get_tracking_uri() if is_tracking_uri_set() else None
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        if env is None:
            del os.environ["MLFLOW_TRACKING_URI"]
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env
        mlflow.set_tracking_uri(before)


def _check_loads(uri: str) -> tuple[list[str], dict[str, str]]:
    """Load each registered model's champion (else its latest version) from the store at
    `uri`: (the URIs loaded, {URI: why} of versions whose files were reached but failed
    their own checks, broken before the copy). Raises naming a version whose files are not
    where the rewritten store says."""
    loaded, broken = [], {}
    with _store(uri):
        client = MlflowClient()
        for model in client.search_registered_models():
            version = model.aliases.get("champion") or max(
                (int(v.version) for v in client.search_model_versions(f"name='{model.name}'")),
                default=None,
            )
            if version is None:
                continue
            model_uri = f"models:/{model.name}/{version}"
            try:
                mlflow.pyfunc.load_model(model_uri)
            except ValueError as err:  # a checksum or digest refused: the files were found
                broken[model_uri] = str(err)
                continue
            except Exception as err:
                raise RuntimeError(
                    f"after relocation {model_uri} does not load ({err}); the store was left "
                    "unchanged: copy the whole store folder and pass the folder that held it "
                    "(--from)"
                ) from err
            loaded.append(model_uri)
    return loaded, broken


def relocate(tracking_uri: str, old_root: str | Path, new_root: str | Path | None = None) -> dict:
    """Point the artifact locations recorded under `old_root` (where the store was written)
    at `new_root` (default: the copied database's folder); {"table.column": rows changed,
    "loaded": [versions loaded to check], "broken": {version: why}} (a version that fails
    its own checks was broken before the copy: relocating does not refuse it).

    A wrong `--from`, an incomplete copy or a store that does not load afterwards is refused
    by name, and the database is left as it was.
    """
    db_path = sqlite_path(tracking_uri)
    old = str(Path(old_root).resolve()).rstrip("/")
    new = str(Path(new_root).resolve() if new_root else db_path.parent).rstrip("/")
    prefixes = [(old, new), (FILE_SCHEME + old, FILE_SCHEME + new)]

    def moved(value: object) -> object:
        if not isinstance(value, str):
            return value
        for before, after in prefixes:
            if value == before or value.startswith(before + "/"):
                return after + value[len(before) :]
        return value

    scratch = db_path.with_name(f".{db_path.name}.relocating")
    scratch.unlink(missing_ok=True)
    with closing(sqlite3.connect(db_path)) as source, closing(sqlite3.connect(scratch)) as copy:
        source.backup(copy)
    changed: dict[str, int] = {}
    try:
        with closing(sqlite3.connect(scratch)) as db, db:
            db.create_function("visprompt_moved", 1, moved, deterministic=True)
            for table, column in _text_columns(db):
                count = db.execute(
                    f'update "{table}" set "{column}" = visprompt_moved("{column}") '
                    f'where "{column}" is not visprompt_moved("{column}")'
                ).rowcount
                if count:
                    changed[f"{table}.{column}"] = count
            if not changed:
                roots = sorted(
                    r[0] for r in db.execute("select artifact_location from experiments")
                )
                raise ValueError(
                    f"{db_path} records no artifact location under {old}; the experiments' "
                    f"artifact roots are {roots}: pass the folder that held the store (--from)"
                )
            missing = _missing_versions(db)
            if missing:
                raise FileNotFoundError(
                    f"{new} lacks the folders of {len(missing)} registered version(s) "
                    f"({'; '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): copy "
                    f"the whole store folder (database and artifact root) from {old}; "
                    f"{db_path} was left unchanged"
                )
        loaded, broken = _check_loads(SQLITE_SCHEME + str(scratch))
        # the commit: the checked copy written back in one SQLite transaction (same file, so
        # connections already open, e.g. MLflow's cached engine, see the new locations)
        with closing(sqlite3.connect(scratch)) as checked, closing(sqlite3.connect(db_path)) as db:
            checked.backup(db)
    finally:
        scratch.unlink(missing_ok=True)
    return changed | {"loaded": loaded, "broken": broken}
