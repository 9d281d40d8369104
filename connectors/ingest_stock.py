"""``POST /stock``: the warehouse (or the ERP) reports stock levels, signed
like a shipment report with one of ``ORDERBUS_SHIPMENT_SECRETS``; the
router's stock intake (passed in as ``accept_stock``) keeps the newer levels
and what each channel listing should show (router/stock.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from canonical.errors import MalformedMessage, TransientError
from connectors.base import ConnectorError
from connectors.ingest_http import as_error, deps_of
from connectors.ingest_shipments import signed_by_the_warehouse

router = APIRouter()


@router.post("/stock", status_code=202)
async def stock(request: Request) -> JSONResponse:
    """``{"levels": [{"sku", "available", "as_of"}]}``: 202 with how many
    channel listings change; 401 unsigned; 422 not a stock report; 503 the
    database is down (send it again)."""
    deps = deps_of(request)
    received, refusal = await signed_by_the_warehouse(request, "stock")
    if refusal is not None:
        return refusal
    if deps.accept_stock is None:
        return await received.refuse(ConnectorError(404, "unknown_channel", "no stock intake"))
    try:
        changed = await run_in_threadpool(deps.accept_stock, received.body)
    except MalformedMessage as exc:
        return await received.refuse(as_error(422, exc))
    except TransientError as exc:
        return await received.refuse(as_error(503, exc))
    return JSONResponse({"status": "accepted", "listings_changed": changed}, status_code=202)
