"""Make a copied SQLite tracking store (database + artifact folder) usable at its new path.

MLflow's SQLite store records artifact locations as absolute paths, so a copy on a
deployment host fails to load `models:/NAME@champion` (or reads the old folder). `relocate`
rewrites, in one transaction, every location under the old store folder to the same
relative path under the copy's; a team server needs none of this (`mlflow-artifacts:/`).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote

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
    # SQLAlchemy's form: sqlite:///relative/path or sqlite:////absolute/path
    path = Path(unquote(tracking_uri.removeprefix(SQLITE_SCHEME)))
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: copy the store's mlflow.db there first")
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


def relocate(tracking_uri: str, old_root: str | Path, new_root: str | Path | None = None) -> dict:
    """Point the artifact locations recorded under `old_root` (where the store was written)
    at `new_root` (default: the copied database's folder); {"table.column": rows changed}.

    A wrong `--from` or an incomplete copy is refused by name instead of half-fixed.
    """
    db_path = sqlite_path(tracking_uri)
    old = str(Path(old_root).absolute()).rstrip("/")
    new = str(Path(new_root).absolute() if new_root else db_path.parent).rstrip("/")
    prefixes = [(old, new), (FILE_SCHEME + old, FILE_SCHEME + new)]
    missing: set[str] = set()

    def moved(value: object) -> object:
        if not isinstance(value, str):
            return value
        for before, after in prefixes:
            if value == before or value.startswith(before + "/"):
                rest = value[len(before) :].lstrip("/")
                top = rest.split("/", 1)[0]
                if top and not (Path(new) / top).exists():
                    missing.add(top)
                return after + value[len(before) :]
        return value

    changed: dict[str, int] = {}
    # one transaction: committed only when every table was rewritten and nothing is missing
    with closing(sqlite3.connect(db_path)) as db, db:
        db.create_function("visprompt_moved", 1, moved, deterministic=True)
        for table, column in _text_columns(db):
            count = db.execute(
                f'update "{table}" set "{column}" = visprompt_moved("{column}") '
                f'where "{column}" is not visprompt_moved("{column}")'
            ).rowcount
            if count:
                changed[f"{table}.{column}"] = count
        if not changed:
            roots = sorted(r[0] for r in db.execute("select artifact_location from experiments"))
            raise ValueError(
                f"{db_path} records no artifact location under {old}; the experiments' "
                f"artifact roots are {roots}: pass the folder that held the store (--from)"
            )
        if missing:
            raise FileNotFoundError(
                f"{new} lacks {sorted(missing)}, which the store's artifact locations need: "
                f"copy the whole store folder (database and artifact root) from {old}"
            )
    return changed
