"""The case database: one engine, its sessions, and the one place SQLAlchemy's errors become ours.

Everything that touches the database goes through a `Database`:

    read()        a session outside any transaction (reads)
    write()       one transaction, committed at the end or rolled back whole
    statement()   one autocommit connection, for single-statement reads (no BEGIN / ROLLBACK)

and each maps SQLAlchemy's exceptions into the project's tree (see `mapped_errors`):

    StaleDataError        -> ConcurrentUpdateError   a row changed between read and write
    IntegrityError        -> DuplicateError          a unique key was taken meanwhile
    DataError             -> InputError              a value the database cannot hold (not worth retrying)
    any other SQLAlchemyError -> StoreError          the database failed or is unreachable

so a caller above this module never sees a SQLAlchemy exception, and a dead database is a
StoreError (HTTP 503, CLI exit 3) wherever it is noticed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic.util.exc import CommandError as AlembicError
from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from triage.errors import ConcurrentUpdateError, DuplicateError, InputError, StoreError


class Base(DeclarativeBase):
    """Every table's declarative base; the schema itself comes from the Alembic migrations."""


@contextmanager
def mapped_errors(what: str = "database unavailable") -> Iterator[None]:
    """SQLAlchemy's exceptions become the project's at this boundary; ours pass through."""
    try:
        yield
    except StaleDataError as exc:
        raise ConcurrentUpdateError(str(exc)) from exc
    except IntegrityError as exc:
        raise DuplicateError(f"{type(exc.orig).__name__}: {exc.orig}") from exc
    except DataError as exc:  # the driver's message names the problem, never the bound values
        raise InputError(f"the database cannot store this value: {str(exc.orig).splitlines()[0]}") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"{what}: {type(exc).__name__}: {exc}") from exc


class Database:
    """One engine and its sessions; thread-safe, built once per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.sqlite = engine.dialect.name == "sqlite"
        self.postgresql = engine.dialect.name == "postgresql"
        # Single-statement reads (the queue) need no transaction: autocommit saves BEGIN and ROLLBACK.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # SQLite has one writer; serialising writes in the process avoids its busy/deadlock errors.
        self._write_lock: threading.Lock | None = threading.Lock() if self.sqlite else None

    @classmethod
    def connect(cls, url: str) -> Database:
        """The database at `url`, its schema migrated to the newest revision."""
        return cls(make_engine(url))

    @contextmanager
    def read(self) -> Iterator[Session]:
        with mapped_errors(), self.sessions() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction; rolled back whole on any error."""
        with self._write_lock or nullcontext(), mapped_errors(), self.sessions.begin() as s:
            yield s

    @contextmanager
    def statement(self) -> Iterator[Connection]:
        with mapped_errors(), self._autocommit.connect() as conn:
            yield conn

    def autocommit(self) -> Engine:
        """The engine in autocommit mode (a session-level advisory lock lives on such a connection)."""
        return self._autocommit

    def ping(self) -> None:
        with self.read() as s:
            s.execute(select(1))

    def close(self) -> None:
        self.engine.dispose()


def database_url(url: str | None, data_dir: Path) -> str:
    return url or f"sqlite:///{data_dir / 'triage.db'}"


def engine_label(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a malformed URL)"


def make_engine(url: str) -> Engine:
    """An engine with the schema migrated to the newest revision."""
    try:
        sqlite = url.startswith("sqlite")
        # The API serves up to 40 requests at once (Starlette's thread pool), plus background drafters.
        pool = {} if sqlite else {"pool_size": 40, "max_overflow": 10, "pool_timeout": 10}
        # hide_parameters: errors and logs show statements, never the complaints and contacts bound to them
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, **pool)
        if sqlite:
            event.listen(engine, "connect", _sqlite_pragmas)
        upgrade(engine)
    except ArgumentError as exc:
        raise InputError(f"not a database URL: {exc}", field="database_url") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"database {engine_label(url)} is unavailable: {type(exc).__name__}: {exc}") from exc
    except AlembicError as exc:  # e.g. a database at a revision this code does not know (a newer version's)
        raise StoreError(f"database {engine_label(url)} cannot be migrated: {exc}") from exc
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL lets the API read while a decision is written; the busy timeout queues writers instead of
    # failing them; SQLite enforces foreign keys only when asked.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def upgrade(engine: Engine) -> str:
    """Apply every Alembic migration not yet applied; returns the revision the database is at."""
    from alembic import command  # alembic is needed only here, once per process
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.connect() as connection:
        return str(MigrationContext.configure(connection).get_current_revision())
