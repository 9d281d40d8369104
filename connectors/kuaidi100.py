"""快递100 (Kuaidi100), a tracking aggregator: its subscription push
(``POST /tracking/kuaidi100`` on the ingest) and its real-time query (the
poll, for carriers without push), each read into a
:class:`~canonical.tracking.TrackingReport` for the tracking intake.

What Kuaidi100 sends and expects, and where each fact comes from (its own
Java demo, github.com/kuaidi100-api/java-demo, and integrations found with
the search tool; no code copied):

- The push is a form (``application/x-www-form-urlencoded``) with ``param``
  (a JSON text) and ``sign`` = upper-case hex MD5 of ``param`` + the salt
  given when subscribing (the demo's ``callBackUrl``: ``sign(param + salt)``;
  an integration's notes: ``upper(md5(param + salt))``).
- ``param``: ``status`` (``polling``; ``shutdown`` once signed for;
  ``abort`` after "3天查询无记录" or "60天无变化"), ``message``, and
  ``lastResult``: ``nu`` (the tracking number), ``com`` (the carrier),
  ``state`` (0 在途, 1 揽收, 2 疑难, 3 签收, 4 退签, 5 派件, 6 退回, 7 转投;
  8 and up are customs and other states), ``ischeck`` and ``data``: the
  events, newest first, each ``context``, ``time``, ``ftime`` (China time).
  (The demo's ``SubscribePushParamResp`` / ``SubscribePushResult`` /
  ``SubscribePushData``.)
- The answer Kuaidi100 counts as received: ``{"result": true,
  "returnCode": "200", "message": "成功"}`` (the demo's ``SubscribeResp``).
- The query: a form with ``customer``, ``param`` (``{"com", "num"}``) and
  ``sign`` = upper-case hex MD5 of ``param`` + key + customer (the demo's
  ``QueryTrackReq``); it answers like ``lastResult`` (``state``, ``data``),
  or ``{"result": false, "returnCode", "message"}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, or_, select

from canonical.errors import EndpointUnavailable, PermanentError, TransientError
from canonical.tracking import ParcelState, TrackingEvent, TrackingReport
from connectors.base import ConnectorError
from connectors.ingest_http import Received, deps_of
from infra.database import translate_db_errors
from infra.setting_specs import Kuaidi100Spec
from infra.tables import orders

log = logging.getLogger(__name__)
router = APIRouter()
CHINA = timezone(timedelta(hours=8))
RECEIVED = {"result": True, "returnCode": "200", "message": "成功"}
STATES = {
    "0": ParcelState.IN_TRANSIT,  # 在途
    "1": ParcelState.IN_TRANSIT,  # 揽收
    "2": ParcelState.EXCEPTION,  # 疑难
    "3": ParcelState.DELIVERED,  # 签收
    "4": ParcelState.EXCEPTION,  # 退签
    "5": ParcelState.OUT_FOR_DELIVERY,  # 派件
    "6": ParcelState.EXCEPTION,  # 退回
    "7": ParcelState.IN_TRANSIT,  # 转投
}
AcceptTracking = Callable[[TrackingReport], str]


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def push_sign(param: str, salt: str) -> str:
    return md5_upper(param + salt)


def query_sign(param: str, key: str, customer: str) -> str:
    return md5_upper(param + key + customer)


def _when(event: dict[str, Any]) -> datetime:
    text = str(event.get("ftime") or event.get("time") or "")
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ConnectorError(422, "unreadable_payload", f"event time {text!r}") from None
    return moment.replace(tzinfo=CHINA)


def report_of(result: dict[str, Any]) -> TrackingReport | None:
    """A ``lastResult`` (or a query's answer) as a report; None when it has
    no tracking number or no event (nothing to apply)."""
    number = str(result.get("nu") or "").strip()
    data = result.get("data")
    if not number or not isinstance(data, list) or not data:
        return None
    state = STATES.get(str(result.get("state")), ParcelState.IN_TRANSIT)
    if str(result.get("ischeck")) == "1":
        state = ParcelState.DELIVERED
    events = [
        TrackingEvent(at=_when(e), description=str(e.get("context") or "")[:500])
        for e in data
        if isinstance(e, dict)
    ]
    try:
        return TrackingReport(tracking_number=number, state=state, events=events)
    except ValueError as exc:
        raise ConnectorError(422, "unreadable_payload", f"not a tracking result: {exc}") from exc


@router.post("/tracking/kuaidi100")
async def kuaidi100_push(request: Request) -> JSONResponse:
    """快递100's subscription push: checked by its sign, applied to the order
    that shipped with the parcel, and answered as Kuaidi100 expects. What
    cannot be applied (an unknown parcel, an order closed) is recorded and
    still answered as received (Kuaidi100 would push it again and again);
    a broker or database outage is not, so that it pushes again."""
    deps = deps_of(request)
    spec = deps.settings.tracking.kuaidi100
    received = await Received.read(request, "tracking", deps.settings.max_body_bytes)
    if spec is None:
        error = ConnectorError(404, "unknown_channel", "ORDERBUS_TRACKING.kuaidi100 is not set")
        return await received.refuse(error, brief=True)
    problem = received.body_problem()
    if problem is not None:
        return await received.refuse(problem)
    try:
        form = parse_qs(received.body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        return await received.refuse(ConnectorError(400, "unreadable_payload", str(exc)))
    param, sign = (form.get("param") or [""])[0], (form.get("sign") or [""])[0]
    if not param or not hmac.compare_digest(sign.upper(), push_sign(param, spec.salt)):
        return await received.refuse(
            ConnectorError(401, "bad_signature", "sign is not upper(md5(param + salt))")
        )
    try:
        data = json.loads(param)
        result = data.get("lastResult") if isinstance(data, dict) else None
        report = report_of(result) if isinstance(result, dict) else None
    except (ValueError, ConnectorError) as exc:
        await received.record(200, "unreadable_payload", f"not a Kuaidi100 push: {exc}")
        return JSONResponse(RECEIVED)
    if report is None:
        why = f"no event to apply (status {data.get('status')!r}: {data.get('message')!r})"
        await received.record(200, "ignored", why)
        return JSONResponse(RECEIVED)
    if deps.accept_tracking is None:
        await received.record(200, "ignored", "this ingest applies no tracking")
        return JSONResponse(RECEIVED)
    try:
        await run_in_threadpool(deps.accept_tracking, report)
    except TransientError as exc:
        await received.record(503, exc.reason, exc.detail)
        return JSONResponse({"result": False, "returnCode": "500", "message": exc.detail}, 503)
    except PermanentError as exc:
        await received.record(200, exc.reason, f"{report.tracking_number}: {exc.detail}")
    return JSONResponse(RECEIVED)


class Kuaidi100Poll:
    """The poll for carriers without push: each shipped parcel of those
    carriers not heard of for ``poll_interval`` is asked for, and what the
    query answers goes to the tracking intake."""

    def __init__(
        self,
        spec: Kuaidi100Spec,
        engine: Engine,
        client: httpx.Client,
        accept: AcceptTracking,
        clock: Callable[[], datetime] = lambda: datetime.now(CHINA),
    ) -> None:
        if not (spec.customer and spec.key):
            raise ValueError("the Kuaidi100 poll needs customer and key")
        self.spec = spec
        self.engine = engine
        self.client = client
        self.accept = accept
        self.clock = clock

    def due(self, limit: int = 100) -> list[tuple[str, str]]:
        """(tracking number, carrier code) of the parcels to ask for."""
        stale = self.clock() - timedelta(seconds=self.spec.poll_interval)
        c = orders.c
        with translate_db_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                select(c.tracking_number, c.body)
                .where(
                    c.status == "shipped",
                    c.tracking_number.is_not(None),
                    or_(c.parcel_updated_at.is_(None), c.parcel_updated_at < stale),
                )
                .limit(limit)
            ).all()
        wanted = set(self.spec.poll_carriers)
        found = []
        for number, body in rows:
            shipment = json.loads(body).get("shipment") or {}
            carrier = str(shipment.get("carrier_code") or shipment.get("carrier") or "")
            if carrier in wanted:
                found.append((str(number), carrier))
        return found

    def query(self, number: str, carrier: str) -> TrackingReport | None:
        param = json.dumps({"com": carrier, "num": number}, separators=(",", ":"))
        assert self.spec.customer and self.spec.key
        form = {
            "customer": self.spec.customer,
            "param": param,
            "sign": query_sign(param, self.spec.key, self.spec.customer),
        }
        try:
            answer = self.client.post(self.spec.query_url, data=form)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"Kuaidi100 query: {exc}") from exc
        if answer.status_code >= 500 or answer.status_code == 429:
            raise EndpointUnavailable(f"Kuaidi100 query answered {answer.status_code}")
        data = answer.json()
        if not isinstance(data, dict) or data.get("result") is False:
            log.info("kuaidi100: %s %s: %s", carrier, number, (data or {}).get("message"))
            return None
        return report_of(data)

    def poll_once(self) -> int:
        """Ask for each parcel due; how many reports went to the intake."""
        applied = 0
        for number, carrier in self.due():
            try:
                report = self.query(number, carrier)
                if report is not None:
                    self.accept(report)
                    applied += 1
            except TransientError as exc:
                log.warning("kuaidi100 poll: %s: %s; next round", number, exc)
                break
            except (PermanentError, ConnectorError) as exc:
                log.warning("kuaidi100 poll: %s: %s", number, exc)
        return applied

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception:  # logged; the next round tries again
                log.exception("kuaidi100 poll failed")
            stop.wait(self.spec.poll_interval)
