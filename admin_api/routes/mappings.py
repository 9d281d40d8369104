"""Mapping tables: product mappings (a channel's SKU -> our SKUs, a multiple
or a bundle) and our SKUs' codes in each system; import and export as a
spreadsheet; the dry run of what stuck orders would become, and the retry of
those that now pass.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from admin_api import mappings
from admin_api.routes.deps import Context, Operator, RowId, Viewer
from canonical.mapping import MappingSet
from infra.database import translate_db_errors
from infra.mappings import load
from infra.request_bodies import read_limited
from infra.spreadsheets import UnreadableFile

router = APIRouter(tags=["mappings"])
MAX_SHEET_BYTES = 10 * 1024 * 1024


class ComponentIn(BaseModel):
    sku: str = Field(min_length=1, max_length=200)
    quantity: int = Field(default=1, ge=1, le=100_000)
    share: int = Field(default=1, ge=0, le=1_000_000)


class ProductMappingIn(BaseModel):
    channel: str = Field(default="", max_length=64, description="'' for every channel")
    shop: str = Field(default="", max_length=200, description="'' for every shop")
    platform_sku: str = Field(min_length=1, max_length=200)
    components: list[ComponentIn] = Field(min_length=1, max_length=mappings.MAX_COMPONENTS)
    note: str | None = Field(default=None, max_length=500)


class CodeIn(BaseModel):
    internal_sku: str = Field(min_length=1, max_length=200)
    target: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=200)


class DryRunIn(BaseModel):
    proposal: ProductMappingIn | None = Field(
        default=None, description="a mapping not saved yet, to see what it would change"
    )


def proposal_added(tables: MappingSet, p: ProductMappingIn) -> MappingSet:
    """The tables with a mapping not saved yet (MappingError when it is wrong)."""
    try:
        return mappings.with_proposal(
            tables, p.channel, p.shop, p.platform_sku, [c.model_dump() for c in p.components]
        )
    except mappings.MappingError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/mappings/products")
def list_products(ctx: Context, _who: Viewer) -> list[dict[str, Any]]:
    with translate_db_errors(), ctx.engine.connect() as conn:
        return mappings.products(conn)


@router.put("/mappings/products")
def put_product(mapping: ProductMappingIn, ctx: Context, who: Operator) -> dict[str, int]:
    """Create or replace the mapping of one platform SKU (of a channel and
    shop, or of any); the tables' new version."""
    try:
        with translate_db_errors(), ctx.engine.begin() as conn:
            version = mappings.put_product(
                conn,
                channel=mapping.channel,
                shop=mapping.shop,
                platform_sku=mapping.platform_sku,
                components=[c.model_dump() for c in mapping.components],
                note=mapping.note,
                by=who.name,
            )
    except mappings.MappingError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"version": version}


@router.delete("/mappings/products/{mapping_id}")
def delete_product(mapping_id: RowId, ctx: Context, who: Operator) -> dict[str, int]:
    try:
        with translate_db_errors(), ctx.engine.begin() as conn:
            return {"version": mappings.delete_product(conn, mapping_id, who.name)}
    except LookupError:
        raise HTTPException(404, "no such mapping") from None


@router.get("/mappings/codes")
def list_codes(ctx: Context, _who: Viewer) -> list[dict[str, Any]]:
    with translate_db_errors(), ctx.engine.connect() as conn:
        return mappings.codes(conn)


@router.put("/mappings/codes")
def put_code(code: CodeIn, ctx: Context, who: Operator) -> dict[str, int]:
    """An internal SKU's code in one system (``finance``: the ERP's material
    code; ``warehouse``: the warehouse's item code)."""
    with translate_db_errors(), ctx.engine.begin() as conn:
        return {
            "version": mappings.put_code(conn, code.internal_sku, code.target, code.code, who.name)
        }


@router.post(
    "/mappings/import",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_sheet(request: Request, who: Operator) -> dict[str, int]:
    """A spreadsheet of mappings (CSV in UTF-8 or GBK, or XLSX; columns in
    admin_api/mappings.py), saved all or nothing."""
    ctx = request.app.state.admin
    body, _, too_large = await read_limited(request, MAX_SHEET_BYTES)
    if too_large:
        raise HTTPException(413, "the sheet is over 10 MiB")
    try:
        with translate_db_errors(), ctx.engine.begin() as conn:
            done = mappings.import_sheet(conn, body, who.name)
    except (mappings.MappingError, UnreadableFile) as exc:
        raise HTTPException(422, str(exc)) from None
    return asdict(done)


@router.get("/mappings/export")
def export_sheet(
    ctx: Context,
    _who: Viewer,
    format_: Annotated[Literal["csv", "xlsx"], Query(alias="format")] = "csv",
) -> Response:
    with translate_db_errors(), ctx.engine.connect() as conn:
        content, media_type, name = mappings.export(conn, format_)
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(content, media_type=media_type, headers=disposition)


@router.post("/mappings/dry-run")
def dry_run(request: DryRunIn, ctx: Context, _who: Viewer) -> list[dict[str, Any]]:
    """Each order stuck on a SKU (held for its mapping: ``hold_id``, once per
    system that takes our codes; or a dead letter: ``dead_letter_id``), and
    what it would become with the tables as they are (or with ``proposal``
    added): whether it passes, and the lines the system would receive.
    Changes nothing."""
    try:
        with translate_db_errors(), ctx.engine.connect() as conn:
            tables = load(conn, ctx.mapping_required)
            if request.proposal is not None:
                tables = proposal_added(tables, request.proposal)
            return [asdict(p) for p in mappings.dry_run(conn, tables, ctx.mapping_scope)]
    except mappings.MappingError as exc:
        raise HTTPException(422, str(exc)) from None


@router.post("/mappings/retry-passing")
def retry_passing(ctx: Context, who: Operator) -> dict[str, Any]:
    """Release every order held for its mapping and retry every dead letter
    stuck on a SKU that the dry run says now passes: ``released`` (hold ids)
    and ``retried`` (dead letter ids). Each goes out once."""
    with translate_db_errors(), ctx.engine.begin() as conn:
        tables = load(conn, ctx.mapping_required)
        done = mappings.retry_passing(conn, tables, who.name, ctx.topology, ctx.mapping_scope)
    return asdict(done)


class ShopIn(BaseModel):
    channel: str = Field(min_length=1, max_length=64)
    shop: str = Field(default="", max_length=200, description="'' for every shop")
    customer: str | None = Field(default=None, max_length=200, description="the ERP customer code")
    department: str | None = Field(default=None, max_length=200)
    settlement_account: str | None = Field(default=None, max_length=200)
    warehouse: str | None = Field(default=None, max_length=200)


class RuleIn(BaseModel):
    warehouse: str = Field(min_length=1, max_length=200)
    channel: str = Field(default="", max_length=64)
    province: str = Field(default="", max_length=64, description="浙江 matches 浙江省")
    sku: str = Field(default="", max_length=200, description="an order holding this channel SKU")
    priority: int = Field(default=100, ge=0, le=1_000_000, description="lower first")


@router.get("/mappings/shops")
def list_shops(ctx: Context, _who: Viewer) -> list[dict[str, Any]]:
    with translate_db_errors(), ctx.engine.connect() as conn:
        return mappings.shops(conn)


@router.put("/mappings/shops")
def put_shop(shop: ShopIn, ctx: Context, who: Operator) -> dict[str, int]:
    """A shop's accounts in the ERP and its warehouse; templates read them as
    ``{{accounts.customer}}``, ``{{accounts.department}}``,
    ``{{accounts.settlement_account}}``, ``{{accounts.warehouse}}``."""
    values = shop.model_dump(exclude={"channel", "shop"})
    with translate_db_errors(), ctx.engine.begin() as conn:
        return {"version": mappings.put_shop(conn, shop.channel, shop.shop, values, who.name)}


@router.get("/mappings/warehouse-rules")
def list_rules(ctx: Context, _who: Viewer) -> list[dict[str, Any]]:
    with translate_db_errors(), ctx.engine.connect() as conn:
        return mappings.rules(conn)


@router.post("/mappings/warehouse-rules")
def add_rule(rule: RuleIn, ctx: Context, who: Operator) -> dict[str, int]:
    """Orders of a channel, to a province, or holding a SKU ship from a
    warehouse: the first matching rule by priority, else the shop's."""
    with translate_db_errors(), ctx.engine.begin() as conn:
        return {"version": mappings.add_rule(conn, **rule.model_dump(), by=who.name)}


@router.delete("/mappings/warehouse-rules/{rule_id}")
def delete_rule(rule_id: RowId, ctx: Context, who: Operator) -> dict[str, int]:
    try:
        with translate_db_errors(), ctx.engine.begin() as conn:
            return {"version": mappings.delete_rule(conn, rule_id, who.name)}
    except LookupError:
        raise HTTPException(404, "no such rule") from None


class CarrierIn(BaseModel):
    carrier: str = Field(min_length=1, max_length=100, description="our code or name: SF, 顺丰速运")
    system: str = Field(
        min_length=1, max_length=64, description="a channel (write-back) or a target"
    )
    code: str = Field(min_length=1, max_length=100, description="that system's code for it")


@router.get("/mappings/carriers")
def list_carriers(ctx: Context, _who: Viewer) -> list[dict[str, Any]]:
    with translate_db_errors(), ctx.engine.connect() as conn:
        return mappings.carriers(conn)


@router.put("/mappings/carriers")
def put_carrier(carrier: CarrierIn, ctx: Context, who: Operator) -> dict[str, int]:
    """One carrier's code in a channel (what its write-back sends as
    ``carrier_code``: JD's logistics id, Pinduoduo's, Youzan's...) or in a
    target system (the ERP's, the warehouse's)."""
    with translate_db_errors(), ctx.engine.begin() as conn:
        return {
            "version": mappings.put_carrier(
                conn, carrier.carrier, carrier.system, carrier.code, who.name
            )
        }
