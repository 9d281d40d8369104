"""What every admin route needs: the admin context (engine, topology, ...)
put on the app by :func:`admin_api.app.create_admin_app`, the callers' roles,
and paging.

(No ``from __future__ import annotations``: FastAPI reads these aliases.)
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy import ColumnElement, Engine, Select, Table, func, select

from admin_api.auth import KeyAuth, Principal, Role
from admin_api.mappings import Scope
from admin_api.metrics import DatabaseCollector
from admin_api.readiness import Readiness
from infra.database import translate_db_errors
from infra.masking import for_viewer
from infra.tables import orders
from infra.topology import Topology
from router.fanout import Fanout

MAX_PAGE = 500
MAX_OFFSET = 10**9
# A row id: what a BIGINT (and SQLite's INTEGER) holds; anything else is a 422.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@dataclass(frozen=True)
class AdminContext:
    engine: Engine
    auth: KeyAuth
    topology: Topology
    readiness: Readiness
    collector: DatabaseCollector
    fanout: Fanout | None
    # channels whose every SKU needs a mapping (ORDERBUS_SKU_MAPPING.required)
    mapping_required: frozenset[str] = frozenset()
    # reads a stored webhook body again with today's connector (connectors/replay.py)
    replay: Callable[[str, Any, bytes], list[Any]] | None = None
    # the systems that take our codes (ORDERBUS_SKU_MAPPING.targets)
    mapping_targets: frozenset[str] = frozenset({"warehouse", "finance"})

    @property
    def mapping_scope(self) -> Scope:
        """For the mapping dry run: who takes our codes, who hears of a release."""
        return Scope(self.mapping_targets, self.fanout or Fanout())


def admin_context(request: Request) -> AdminContext:
    context: AdminContext = request.app.state.admin
    return context


def _role(role: Role) -> Callable[[Request], Principal]:
    def dependency(request: Request) -> Principal:
        return admin_context(request).auth.require(role)(request)

    return dependency


Context = Annotated[AdminContext, Depends(admin_context)]
Viewer = Annotated[Principal, Depends(_role(Role.viewer))]
Operator = Annotated[Principal, Depends(_role(Role.operator))]
Admin = Annotated[Principal, Depends(_role(Role.admin))]


def page(engine: Engine, query: Select[Any], order: Any, limit: int, offset: int) -> dict[str, Any]:
    """One page of ``query``'s rows with the total, as every list answers."""
    with translate_db_errors(), engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = conn.execute(query.order_by(order).limit(limit).offset(offset)).mappings().all()
    return {"total": int(total), "limit": limit, "offset": offset, "items": list(rows)}


def masked_rows(
    who: Principal, found: dict[str, Any], **fields: Callable[[Any], Any]
) -> dict[str, Any]:
    """A page as ``who`` may read it: for a viewer, each row masked as a whole
    (infra.masking.for_viewer: by field, in text, and each personal value the
    row holds scrubbed wherever else it quotes it), then each named field
    passed through its own function, given the row as stored."""
    if who.sees_personal_data:
        return found
    found["items"] = [
        {**for_viewer(dict(row)), **{name: mask(row[name]) for name, mask in fields.items()}}
        for row in found["items"]
    ]
    return found


def where_equal(table: Table, **values: object) -> list[ColumnElement[bool]]:
    """``column == value`` for each filter given (None or empty: not a filter)."""
    return [table.c[name] == value for name, value in values.items() if value]


def order_bodies(ctx: AdminContext, numbers: Iterable[str]) -> dict[str, str]:
    """The stored bodies of these orders (to scrub their buyers' details
    wherever a viewer's page quotes them)."""
    wanted = sorted(set(numbers))
    if not wanted:
        return {}
    with translate_db_errors(), ctx.engine.connect() as conn:
        rows = conn.execute(
            select(orders.c.order_number, orders.c.body).where(orders.c.order_number.in_(wanted))
        )
        return {number: body for number, body in rows}
