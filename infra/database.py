"""Engines, migrations and the few dialect-specific statements orderbus needs."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Connection, Engine, bindparam, create_engine, event, insert
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.sql.dml import Insert

from canonical.errors import DatabaseUnavailable
from canonical.json_bytes import compact_text
from infra.tables import metadata

MIGRATIONS = Path(__file__).with_name("migrations")
# A pooled PostgreSQL connection idle this long is pinged before it is lent.
PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below issue BEGIN IMMEDIATE: with
            # deferred transactions two writers deadlock on the lock upgrade.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=10)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before lending it only when it has been idle
    for PING_AFTER_IDLE_SECONDS (a dead one is replaced, as with SQLAlchemy's
    ``pool_pre_ping``). A worker takes a connection for every batch: pinging
    each time was a round trip a batch, the largest fixed cost of a batch of
    one. A connection lost within the second since its last use fails that
    one batch, which is retried as any batch is when the database is away."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _alive(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")  # none: new, or never lent before
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise sa_exc.DisconnectionError(f"connection lost while pooled: {exc}") from exc
        if not alive:
            raise sa_exc.DisconnectionError("connection lost while pooled")


def in_chunks(values: Sequence[Any], size: int = 1000) -> list[list[Any]]:
    """``values`` in lists of at most ``size``: an ``IN (...)`` list a statement."""
    return [list(values[i : i + size]) for i in range(0, len(values), size)]


# The setting prefer_key_lookups makes, for statements sent straight to the driver.
KEY_LOOKUPS = "SET LOCAL enable_seqscan = off"


def prefer_key_lookups(conn: Connection) -> None:
    """Make PostgreSQL answer this transaction's key lookups from their indexes.

    The router and the consumers look rows up by key, a batch at a time. A
    plan made while a table was small is a sequential scan, and PostgreSQL
    keeps it as the table grows: psycopg prepares a statement after five runs
    and its generic plan stays until ANALYZE, which may never come (autovacuum
    off, or a table growing faster than autoanalyze). The router then read the
    whole arrivals table for each batch, and PostgreSQL's CPU tripled at
    100,000 orders. Here a sequential scan is only ever the planner's last resort.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(KEY_LOOKUPS)


def dialect_insert(conn: Connection, table: Any) -> Insert:
    """INSERT that knows ON CONFLICT, for PostgreSQL and SQLite alike."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    return insert(table)


# New ids from a table's id sequence (parameters: table, count), read with the
# batch's other reads. With the ids known, a batch's rows go in as one prepared
# statement run for each row (psycopg's pipeline) instead of one multi-row
# INSERT … RETURNING whose text (hundreds of parameters, a new length each
# batch) the driver parses again every time: that parse was the router's
# largest single cost per order (``python -m bench.profile``).
RESERVE_IDS = (
    "SELECT nextval(seq) FROM (SELECT pg_get_serial_sequence(%(table)s, 'id') AS seq) s,"
    " generate_series(1, %(count)s)"
)


# What ``commit=True`` adds to a round trip: the transaction ends in it.
# It is for the last statements of an ``engine.begin()`` block; the block's own
# commit then has nothing to do (psycopg sends none when the server is idle).
END_TRANSACTION = "COMMIT"


def _as_one_query(cursor: Any, statements: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    """Statements and their parameters as one text, the values written in as
    literals by the driver (psycopg's client-side binding: its quoting, by the
    connection's encoding and settings, never ours)."""
    return ";\n".join(cursor.mogrify(sql, dict(params)) for sql, params in statements)


def pipelined(
    conn: Connection,
    statements: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    commit: bool = False,
) -> list[list[Any]]:
    """Run driver-level statements on PostgreSQL in one round trip; each
    one's rows, as named tuples. In autocommit they share one transaction
    (a setting made for it lasts until its end: ``set_config(..., true)`` or
    SET LOCAL); otherwise they run in the connection's, which ``commit`` ends
    with them (see END_TRANSACTION). A lost connection is DatabaseUnavailable
    (and the connection is dropped).

    They go as one query with their values written in by the driver, not as
    psycopg's pipeline of prepared statements: the pipeline cost 10-14 us of
    the client's CPU a statement more (a poll and a send each, and the
    prepared statements' bookkeeping), and the server's CPU was the same."""
    import psycopg
    from psycopg.rows import namedtuple_row

    raw: Any = conn.connection.dbapi_connection
    try:
        cursor = psycopg.ClientCursor(raw, row_factory=namedtuple_row)
        text = _as_one_query(cursor, statements)
        # one simple-protocol query: one message, each statement its own
        # snapshot; never prepared (a text of several statements cannot be)
        cursor.execute(f"{text};\n{END_TRANSACTION}" if commit else text, prepare=False)
        answers = []
        for index in range(len(statements)):
            if index:
                cursor.nextset()
            answers.append(cursor.fetchall() if cursor.description else [])
        return answers
    except psycopg.Error as exc:
        raise _as_sqlalchemy_error(conn, exc) from exc


def insert_pipelined(
    conn: Connection,
    batches: Sequence[tuple[Any, Sequence[Mapping[str, Any]]]],
    *,
    updates: Sequence[tuple[Any, Sequence[Mapping[str, Any]]]] = (),
    commit: bool = False,
    absent: bool = False,
    first: Sequence[str] = (),
) -> None:
    """Insert each ``(table, rows)`` in turn (``absent``: skipping a row whose
    unique key exists, as :func:`insert_all_absent`), then make the ``updates`` (each
    row's ``id`` names the row, its other keys are the columns set), all in
    one round trip on PostgreSQL (psycopg's pipeline: one prepared statement
    run for each row, no SQL compiled per batch), ``commit`` ending the
    transaction in it too (see END_TRANSACTION); elsewhere through
    SQLAlchemy, whose block commits. JSON columns take Python values, as
    with SQLAlchemy.

    Rows go as parameters, not written into one query as :func:`pipelined`
    sends its statements: an order's row holds its body (1.5 KB), and
    writing 50 of them in as literals cost the client as much as the
    pipeline and the server a third more (parsing the literals).

    ``first``: statements without parameters sent ahead of the rows in the
    same round trip on PostgreSQL (a ``SET LOCAL`` for the transaction);
    elsewhere they are not sent."""
    batches = [(table, rows) for table, rows in batches if rows]
    updates = [(table, rows) for table, rows in updates if rows]
    if conn.dialect.name != "postgresql":
        for table, rows in batches:
            if absent:
                insert_all_absent(conn, table, rows)
            else:
                conn.execute(table.insert(), list(rows))
        for table, rows in updates:
            for alike in _same_columns(rows).values():
                conn.execute(
                    table.update().where(table.c.id == bindparam("row_id")),
                    [_keyed_by_row_id(r) for r in alike],
                )
        return
    import psycopg

    raw: Any = conn.connection.dbapi_connection
    try:
        with raw.pipeline(), raw.cursor() as cursor:
            for statement in first:
                cursor.execute(statement)
            for table, rows in batches:
                for columns, same in _by_columns(table, rows).items():
                    json_columns = _json_columns(table, columns)
                    cursor.executemany(
                        _insert_sql(table.name, columns, json_columns, absent),
                        _as_driver_rows(json_columns, same),
                    )
            for table, rows in updates:
                for columns, alike in _same_columns(rows).items():
                    json_columns = _json_columns(table, columns)
                    cursor.executemany(
                        _update_sql(table.name, columns, json_columns),
                        _as_driver_rows(json_columns, alike),
                    )
            if commit:
                cursor.execute(END_TRANSACTION)
    except psycopg.Error as exc:
        raise _as_sqlalchemy_error(conn, exc) from exc


def _as_sqlalchemy_error(conn: Connection, exc: Exception) -> Exception:
    """A driver error from a pipeline (or a statement sent straight to the
    driver) as SQLAlchemy would have raised it (a lost race is an
    IntegrityError the caller retries); a lost connection, closed or ending
    as SQLAlchemy's dialect tells (the server shutting it down), is
    DatabaseUnavailable, and the connection is dropped."""
    import psycopg

    raw = conn.connection.dbapi_connection
    if isinstance(exc, psycopg.OperationalError) and raw is not None:
        if raw.closed or conn.dialect.is_disconnect(exc, raw, None):  # type: ignore[arg-type]
            conn.invalidate()
            # the pool's other connections may be as dead (a restart): they are
            # replaced, as SQLAlchemy does on a disconnect it sees itself
            conn.engine.dispose()
            return DatabaseUnavailable(f"database unavailable: {exc}")
    return sa_exc.DBAPIError.instance(None, None, exc, psycopg.Error)


def _by_columns(
    table: Any, rows: Sequence[Mapping[str, Any]]
) -> dict[tuple[str, ...], list[Mapping[str, Any]]]:
    """The rows grouped by the columns they give, each with the columns'
    Python-side scalar defaults filled in (as SQLAlchemy's insert would)."""
    defaults = {
        c.name: c.default.arg
        for c in table.columns
        if c.default is not None and getattr(c.default, "is_scalar", False)
    }
    return _same_columns([{**{k: v for k, v in defaults.items() if k not in r}, **r} for r in rows])


def _keyed_by_row_id(row: Mapping[str, Any]) -> dict[str, Any]:
    """An update's row for SQLAlchemy: its id under a name no column has."""
    return {("row_id" if k == "id" else k): v for k, v in row.items()}


def _same_columns(
    rows: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, ...], list[Mapping[str, Any]]]:
    """The rows grouped by the columns they give (an executemany a group)."""
    grouped: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(tuple(row), []).append(row)
    return grouped


def _json_columns(table: Any, columns: tuple[str, ...]) -> frozenset[str]:
    return frozenset(c for c in columns if isinstance(table.c[c].type, JSON))


def _as_driver_rows(
    json_columns: frozenset[str], rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The rows as the driver takes them: JSON columns' values as JSON text."""
    if not json_columns:
        return [dict(r) for r in rows]
    return [{c: compact_text(v) if c in json_columns else v for c, v in r.items()} for r in rows]


@functools.cache
def _update_sql(table: str, columns: tuple[str, ...], json_columns: frozenset[str]) -> str:
    sets = ", ".join(
        f"{c} = %({c})s::json" if c in json_columns else f"{c} = %({c})s"
        for c in columns
        if c != "id"
    )
    return f"UPDATE {table} SET {sets} WHERE id = %(id)s"  # noqa: S608


@functools.cache
def _insert_sql(
    table: str, columns: tuple[str, ...], json_columns: frozenset[str], absent: bool = False
) -> str:
    names = ", ".join(columns)
    values = ", ".join(f"%({c})s::json" if c in json_columns else f"%({c})s" for c in columns)
    skip = " ON CONFLICT DO NOTHING" if absent else ""
    return f"INSERT INTO {table} ({names}) VALUES ({values}){skip}"  # noqa: S608


@functools.cache
def _absent_insert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    values = ", ".join(f"%({c})s" for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({values}) ON CONFLICT DO NOTHING"  # noqa: S608


def insert_one_absent(
    conn: Connection, table: Any, row: Mapping[str, Any], *, then: str | None = None
) -> None:
    """Insert one row unless its unique key exists: on PostgreSQL a prepared
    statement (no SQL compiled per row: the consumers write one inbox row per
    delivery, and SQLAlchemy's work was half their CPU), on an autocommitted
    connection straight to the driver; elsewhere as :func:`insert_all_absent`.
    The row's values must be what the driver takes as they are
    (timezone-aware datetimes, no JSON).
    ``then``: a statement without parameters sent after it in the same round
    trip (PostgreSQL only)."""
    for value in row.values():
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("orderbus stores timezone-aware datetimes only")
    if conn.dialect.name != "postgresql":
        insert_all_absent(conn, table, [row])
        return
    sql = _absent_insert_sql(table.name, tuple(row))
    if then is not None:
        pipelined(conn, [(sql, row), (then, {})])
        return
    raw: Any = conn.connection.dbapi_connection
    if not raw.autocommit:  # in SQLAlchemy's transaction: through it, so it commits this
        conn.exec_driver_sql(sql, dict(row))
        return
    import psycopg

    try:  # autocommitted: nothing of SQLAlchemy's is needed (its work was ~40 us a row)
        _row_cursor(conn, raw).execute(sql, dict(row))
    except psycopg.Error as exc:
        raise _as_sqlalchemy_error(conn, exc) from exc


def _row_cursor(conn: Connection, raw: Any) -> Any:
    """The cursor kept for this driver connection's single rows (in the pool
    record's ``info``, which SQLAlchemy empties when it replaces the
    connection; checked against the connection all the same): a new cursor
    for each was a fifth of a row's cost (44 -> 35 us alone)."""
    info = conn.connection.info
    cursor = info.get("row_cursor")
    if cursor is None or cursor.connection is not raw or cursor.closed:
        cursor = info["row_cursor"] = raw.cursor()
    return cursor


def insert_all_absent(conn: Connection, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows in one statement, skipping those whose unique key exists."""
    if rows:
        conn.execute(dialect_insert(conn, table).on_conflict_do_nothing(), rows)  # type: ignore[attr-defined]


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn "the database is down" into DatabaseUnavailable (a transient error)."""
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise DatabaseUnavailable(f"database unavailable: {exc.orig or exc}") from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseUnavailable(f"database connection lost: {exc.orig or exc}") from exc
        raise


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations (``orderbus db upgrade``)."""
    from alembic import command

    engine = make_engine(url)  # creates the SQLite folder when needed
    engine.dispose()
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Undo the migrations above ``revision`` (``orderbus db downgrade``)."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def migrations() -> list[tuple[str, str]]:
    """(revision, the first line of its purpose) of every migration, newest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(MIGRATIONS))
    found = []
    for script in scripts.walk_revisions():
        purpose = (script.doc or "").strip().splitlines()
        found.append((script.revision, purpose[0] if purpose else ""))
    return found


def current_revision(url: str) -> str:
    """The migration the database is at ("none" before the first)."""
    from alembic.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
    finally:
        engine.dispose()
    return ", ".join(heads) or "none"


__all__ = [
    "dialect_insert",
    "insert_all_absent",
    "make_engine",
    "metadata",
    "translate_db_errors",
    "upgrade",
]
