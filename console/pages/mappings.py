"""SKU mapping (operations): what each channel's SKU is in our catalogue (one
SKU, a multiple, a bundle) and each SKU's code in the ERP and the warehouse;
add or replace one, import a spreadsheet, export; and the dry run: the orders
stuck on a SKU, what each would now become, and a retry of those that pass.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection

from admin_api import mappings
from console import story
from console.web import PREFIX, OperatorPage, Reader, Viewer, checked_form, see_other, text_field
from infra.database import translate_db_errors
from infra.mappings import load
from infra.spreadsheets import UnreadableFile

router = APIRouter()
# One component per line: "SKU", "SKU 6", "SKU*6", "SKU, 6, 3" (quantity, price weight),
# with Chinese commas and the multiplication sign read too.
COMPONENT = re.compile(
    r"^\s*(?P<sku>[^\s,\uff0c\u00d7*]+)\s*(?:[,\uff0c\u00d7*xX\s]\s*(?P<qty>\d+))?"
    r"\s*(?:[,\uff0c\s]\s*(?P<share>\d+))?\s*$"
)


def parse_components(text: str) -> list[dict[str, Any]]:
    parts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        found = COMPONENT.match(line)
        if not found:
            raise mappings.MappingError(
                f"line {number}: write SKU, quantity, weight (e.g. TEA, 1, 3)"
            )
        parts.append(
            {
                "sku": found["sku"],
                "quantity": int(found["qty"] or 1),
                "share": int(found["share"] or 1),
            }
        )
    return parts


def _page(
    viewer: Viewer, *, message: str = "", error: str = "", status_code: int = 200
) -> HTMLResponse:
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        rows = mappings.products(conn)
        codes = mappings.codes(conn)
        shops = mappings.shops(conn)
        rules = mappings.rules(conn)
        carriers = mappings.carriers(conn)
        tables = load(conn, viewer.ctx.mapping_required)
        preview = mappings.dry_run(conn, tables, viewer.ctx.mapping_scope)
    by_sku: dict[str, dict[str, str]] = {}
    for code in codes:
        by_sku.setdefault(code["internal_sku"], {})[code["target"]] = code["code"]
    return viewer.render(
        "mappings.html",
        status_code,
        rows=rows,
        codes=by_sku,
        shops=shops,
        rules=rules,
        carriers=carriers,
        version=tables.version,
        preview=preview,
        passing=len(mappings.passing_orders(preview)),
        message=message,
        error=error,
        system_name=lambda target: story.target_name(viewer._, target),
    )


@router.get("/mappings")
def mappings_page(viewer: Reader) -> HTMLResponse:
    return _page(viewer)


def _saved(viewer: Viewer, change: Callable[[Connection], object]) -> Response:
    """Make one change in its own transaction, then back to the page; a
    change the tables refuse is said on the page, nothing saved."""
    try:
        with translate_db_errors(), viewer.ctx.engine.begin() as conn:
            change(conn)
    except (mappings.MappingError, ValueError) as exc:
        return _page(viewer, error=viewer._("Not saved: %(why)s", why=str(exc)), status_code=422)
    except LookupError:
        pass  # deleted already: the page shows it
    return see_other(f"{PREFIX}/mappings")


@router.post("/mappings/products")
async def save_mapping(request: Request, viewer: OperatorPage) -> Response:
    form = await checked_form(request, viewer)

    def change(conn: Connection) -> None:
        parts = parse_components(text_field(form, "components", 5000))
        mappings.put_product(
            conn,
            channel=text_field(form, "channel", 64),
            shop=text_field(form, "shop", 200),
            platform_sku=text_field(form, "platform_sku", 200),
            components=parts,
            note=text_field(form, "note", 500) or None,
            by=viewer.name,
        )
        for target in ("finance", "warehouse"):
            code = text_field(form, f"{target}_code", 200)
            if code and len(parts) == 1:
                mappings.put_code(conn, str(parts[0]["sku"]), target, code, viewer.name)

    return _saved(viewer, change)


@router.post("/mappings/codes")
async def save_code(request: Request, viewer: OperatorPage) -> Response:
    form = await checked_form(request, viewer)
    return _saved(
        viewer,
        lambda conn: mappings.put_code(
            conn,
            text_field(form, "internal_sku", 200),
            text_field(form, "target", 64),
            text_field(form, "code", 200),
            viewer.name,
        ),
    )


@router.post("/mappings/{mapping_id}/delete")
async def delete_mapping(mapping_id: int, request: Request, viewer: OperatorPage) -> Response:
    await checked_form(request, viewer)
    return _saved(viewer, lambda conn: mappings.delete_product(conn, mapping_id, viewer.name))


@router.post("/mappings/import")
async def import_mappings(request: Request, viewer: OperatorPage) -> Response:
    form = await checked_form(request, viewer)
    upload = form.get("sheet")
    if upload is None or isinstance(upload, str):
        return _page(viewer, error=viewer._("Choose the spreadsheet to import."), status_code=422)
    data = await upload.read()
    try:
        with translate_db_errors(), viewer.ctx.engine.begin() as conn:
            done = mappings.import_sheet(conn, data, viewer.name)
    except (mappings.MappingError, UnreadableFile) as exc:
        return _page(
            viewer, error=viewer._("Nothing imported: %(why)s", why=str(exc)), status_code=422
        )
    return _page(
        viewer,
        message=viewer._(
            "Imported %(m)s mappings and %(c)s codes.", **{"m": done.mappings, "c": done.codes}
        ),
    )


@router.post("/mappings/retry-passing")
async def retry_passing(request: Request, viewer: OperatorPage) -> Response:
    await checked_form(request, viewer)
    with translate_db_errors(), viewer.ctx.engine.begin() as conn:
        tables = load(conn, viewer.ctx.mapping_required)
        done = mappings.retry_passing(
            conn, tables, viewer.name, viewer.ctx.topology, viewer.ctx.mapping_scope
        )
    return _page(
        viewer,
        message=viewer._(
            "Released %(h)s held orders and retried %(d)s stuck deliveries.",
            h=len(done.released),
            d=len(done.retried),
        ),
    )


@router.post("/mappings/shops")
async def save_shop(request: Request, viewer: OperatorPage) -> Response:
    form = await checked_form(request, viewer)
    values: dict[str, str | None] = {k: text_field(form, k, 200) for k in mappings.SHOP_FIELDS}
    channel, shop = text_field(form, "channel", 64), text_field(form, "shop", 200)
    return _saved(viewer, lambda conn: mappings.put_shop(conn, channel, shop, values, viewer.name))


@router.post("/mappings/carriers")
async def save_carrier(request: Request, viewer: OperatorPage) -> Response:
    form = await checked_form(request, viewer)
    return _saved(
        viewer,
        lambda conn: mappings.put_carrier(
            conn,
            text_field(form, "carrier", 100),
            text_field(form, "system", 64),
            text_field(form, "code", 100),
            viewer.name,
        ),
    )


@router.post("/mappings/rules")
async def add_rule(request: Request, viewer: OperatorPage) -> Response:
    form = await checked_form(request, viewer)
    return _saved(
        viewer,
        lambda conn: mappings.add_rule(
            conn,
            warehouse=text_field(form, "warehouse", 200),
            channel=text_field(form, "channel", 64),
            province=text_field(form, "province", 64),
            sku=text_field(form, "sku", 200),
            priority=int(text_field(form, "priority", 9) or "100"),
            by=viewer.name,
        ),
    )


@router.post("/mappings/rules/{rule_id}/delete")
async def delete_rule(rule_id: int, request: Request, viewer: OperatorPage) -> Response:
    await checked_form(request, viewer)
    return _saved(viewer, lambda conn: mappings.delete_rule(conn, rule_id, viewer.name))


@router.get("/mappings/export")
def export_mappings(viewer: Reader, kind: str = "csv") -> Response:
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        content, media_type, name = mappings.export(conn, kind)
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(content, media_type=media_type, headers=disposition)
