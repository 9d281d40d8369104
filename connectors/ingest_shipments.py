"""``POST /shipments``: a warehouse reports a shipment, signed like a
channel's webhook with one of ``ORDERBUS_SHIPMENT_SECRETS``; the router's
intake (passed in as ``accept_shipment``) makes it the order's shipped
revision."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from canonical.errors import MalformedMessage, OrderClosed, TransientError, UnknownOrder
from connectors.ingest_http import Received, as_error, deps_of
from connectors.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify

router = APIRouter()


async def signed_by_the_warehouse(
    request: Request, where: str
) -> tuple[Received, JSONResponse | None]:
    """The request's body, or the refusal (recorded) of a body too large or
    not signed with one of ORDERBUS_SHIPMENT_SECRETS (the warehouse's)."""
    deps = deps_of(request)
    settings = deps.settings
    received = await Received.read(request, where, settings.max_body_bytes)
    problem = received.body_problem()
    if problem is not None:
        return received, await received.refuse(problem)
    try:
        verify(
            settings.shipment_secrets,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            received.body,
            deps.clock(),
            settings.signature_tolerance,
        )
    except SignatureError as exc:
        return received, await received.refuse(as_error(401, exc))
    return received, None


# Each refusal of the intake, and the status it is answered with.
REFUSALS: tuple[tuple[type[Exception], int], ...] = (
    (UnknownOrder, 404),
    (OrderClosed, 409),
    (MalformedMessage, 422),
    (TransientError, 503),
)


@router.post(
    "/shipments",
    status_code=202,
    responses={
        401: {"description": "Missing, stale or wrong signature"},
        404: {"description": "No such order"},
        409: {"description": "The order is cancelled or refunded"},
        413: {"description": "Body larger than ORDERBUS_MAX_BODY_BYTES"},
        422: {"description": "Not a shipment report"},
        503: {"description": "Broker or database unavailable; send it again later"},
    },
)
async def shipment(request: Request) -> JSONResponse:
    """A warehouse reports a shipment (router/shipments.py), signed like a
    channel's webhook with one of ORDERBUS_SHIPMENT_SECRETS."""
    deps = deps_of(request)
    received, refusal = await signed_by_the_warehouse(request, "shipments")
    if refusal is not None:
        return refusal
    try:
        if deps.accept_shipment is None:
            raise UnknownOrder("this ingest takes no shipment reports")
        message_id = await run_in_threadpool(deps.accept_shipment, received.body)
    except (UnknownOrder, OrderClosed, MalformedMessage, TransientError) as exc:
        status = next(code for kind, code in REFUSALS if isinstance(exc, kind))
        return await received.refuse(as_error(status, exc))
    return JSONResponse({"status": "accepted", "message_id": message_id}, status_code=202)
