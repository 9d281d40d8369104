"""The customers' own order lookup (查询我的订单), on the ingest process:
``GET /track`` (a page for a phone, Chinese first, ``?lang=en``),
``POST /track`` (the page's form) and ``POST /track.json`` (for the
mini-program or the official account: ``{"order": ..., "phone_tail": "5678"}``).

A customer enters the order number (the platform's, or orderbus's ``OB…``)
and the last 4 digits of the phone the order was placed with, and sees its
status, carrier, tracking number and its steps: never a name, a phone or an
address.

Guessing is made useless: each client address may look up
``ORDERBUS_LOOKUP.per_client`` times per window, and an order number takes
``failures_per_order`` wrong tails per window, then is locked (even the
right tail waits). A wrong number and a wrong tail get the same answer in the
same time: every answer takes at least ``answer_ms``. The counters are in the
database (infra/lookup_limits.py), so the limits hold across processes.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import Engine, or_, select

from canonical.order import CanonicalOrder
from connectors.ingest_http import deps_of
from infra import lookup_limits
from infra.database import translate_db_errors
from infra.setting_specs import LookupSettings
from infra.tables import orders

router = APIRouter()
TAIL = re.compile(r"^[0-9]{4}$")
PLACE = re.compile(r"[【\[]([^】\]]{1,20})[】\]]")  # 【武汉】: where a carrier's event was
MAX_NUMBER = 64
NOBODY = "----"  # compared against when no order has the number: the same work either way

WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "查询我的订单",
        "order": "订单号",
        "tail": "下单手机号后 4 位",
        "look": "查询",
        "not_found": "没有找到这个订单：请核对订单号和手机号后 4 位。",
        "bad_input": "请填写订单号，以及手机号的后 4 位数字。",
        "too_many": "查询太频繁了，请稍后再试。",
        "locked": "这个订单号的查询错误次数太多，已暂时锁定，请稍后再试。",
        "status": "状态",
        "carrier": "快递公司",
        "tracking": "运单号",
        "steps": "进度",
        "other": "English",
        "hint": "不会显示姓名、电话和地址。",
        "created": "已下单，待付款",
        "paid": "已付款，等待发货",
        "shipped": "已发货",
        "delivered": "已签收",
        "cancelled": "已取消",
        "refunded": "已退款",
        "placed": "下单",
        "shipped_step": "发货",
        "moving": "运输途中",
        "parcel_in_transit": "运输中",
        "parcel_out_for_delivery": "派送中",
        "parcel_delivered": "已签收",
        "parcel_exception": "运输异常，我们正在跟进",
    },
    "en": {
        "title": "Look up my order",
        "order": "Order number",
        "tail": "Last 4 digits of your phone",
        "look": "Look up",
        "not_found": "No such order: check the order number and the last 4 digits of the phone.",
        "bad_input": "Enter the order number and the last 4 digits of the phone.",
        "too_many": "Too many lookups: try again later.",
        "locked": "Too many wrong tries for this order number: locked for a while, try later.",
        "status": "Status",
        "carrier": "Carrier",
        "tracking": "Tracking number",
        "steps": "Steps",
        "other": "中文",
        "hint": "No name, phone or address is shown.",
        "created": "Placed, not paid",
        "paid": "Paid, waiting to ship",
        "shipped": "Shipped",
        "delivered": "Delivered",
        "cancelled": "Cancelled",
        "refunded": "Refunded",
        "placed": "Placed",
        "shipped_step": "Shipped",
        "moving": "On its way",
        "parcel_in_transit": "In transit",
        "parcel_out_for_delivery": "Out for delivery",
        "parcel_delivered": "Delivered",
        "parcel_exception": "A problem on the way: we are on it",
    },
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def tail_of(order: CanonicalOrder) -> str:
    """The last 4 digits of the order's phone (or of its masked number)."""
    for phone in (order.customer.phone, order.customer.masked_phone):
        digits = re.sub(r"\D", "", phone or "")
        if len(digits) >= 4:
            return digits[-4:]
    return NOBODY


def public_view(order: CanonicalOrder, lang: str) -> dict[str, Any]:
    """What a customer may see of an order: nothing that names or reaches them."""
    words = WORDS[lang]
    shipment = order.shipment
    steps = [{"at": order.placed_at.isoformat(), "what": words["placed"]}]
    if shipment is not None:
        steps.append({"at": shipment.shipped_at.isoformat(), "what": words["shipped_step"]})
    if order.tracking is not None:
        # the carrier's words may name the person who signed, or a courier's
        # phone: only where the parcel was is shown
        for event in reversed(order.tracking.events):
            place = PLACE.search(event.description)
            where = place.group(1) if place else ""
            steps.append({"at": event.at.isoformat(), "what": f"{words['moving']} {where}".strip()})
    if order.status.value in ("delivered", "cancelled", "refunded") and order.updated_at:
        steps.append({"at": order.updated_at.isoformat(), "what": words[order.status.value]})
    parcel = order.tracking.state.value if order.tracking else None
    return {
        "status": order.status.value,
        "status_text": words[order.status.value],
        "parcel": parcel,
        "parcel_text": words.get(f"parcel_{parcel}") if parcel else None,
        "carrier": shipment.carrier if shipment else None,
        "tracking_number": shipment.tracking_number if shipment else None,
        "steps": steps,
    }


def _lookup(
    engine: Engine, limits: LookupSettings, client: str, number: str, tail: str, lang: str
) -> Answer:
    words = WORDS[lang]
    now = datetime.now(UTC)
    window = lookup_limits.window_of(now, limits.window_minutes)
    with translate_db_errors(), engine.begin() as conn:
        if lookup_limits.raise_count(conn, f"client:{client}", window) > limits.per_client:
            return Answer(429, {"error": "too_many", "message": words["too_many"]})
        order_key = f"order:{number}"
        if lookup_limits.count_of(conn, order_key, window) >= limits.failures_per_order:
            return Answer(429, {"error": "locked", "message": words["locked"]})
        bodies = conn.scalars(
            select(orders.c.body)
            .where(or_(orders.c.order_number == number, orders.c.external_id == number))
            .limit(5)
        ).all()
        found: list[CanonicalOrder | None] = [
            CanonicalOrder.from_wire(b.encode("utf-8")) for b in bodies
        ]
        match = None
        for order in found or [None]:  # no order: the same comparison, against nobody
            real = tail_of(order) if order is not None else NOBODY
            if hmac.compare_digest(real, tail) and order is not None:
                match = order
        if match is None:
            lookup_limits.raise_count(conn, order_key, window)
            lookup_limits.forget_before(conn, window, limits.window_minutes)
            return Answer(404, {"error": "not_found", "message": words["not_found"]})
    return Answer(200, public_view(match, lang))


async def answer_for(request: Request, number: str, tail: str, lang: str) -> Answer:
    """The answer, never sooner than ``answer_ms`` after the request came."""
    started = time.monotonic()
    deps = deps_of(request)
    limits = deps.settings.lookup
    number, tail = number.strip(), tail.strip()
    if not number or len(number) > MAX_NUMBER or not TAIL.fullmatch(tail):
        result = Answer(422, {"error": "bad_input", "message": WORDS[lang]["bad_input"]})
    else:
        client = request.client.host if request.client else "unknown"
        result = await run_in_threadpool(_lookup, deps.engine, limits, client, number, tail, lang)
    left = limits.answer_ms / 1000 - (time.monotonic() - started)
    if left > 0:
        await asyncio.sleep(left)
    return result


def language(request: Request, asked: str | None = None) -> str:
    wanted = asked or request.query_params.get("lang") or ""
    if wanted in WORDS:
        return wanted
    accept = request.headers.get("accept-language", "").lower()
    return "en" if accept.startswith("en") else "zh"


@router.post("/track.json")
async def track_json(request: Request) -> JSONResponse:
    """``{"order": "...", "phone_tail": "5678", "lang": "zh"|"en"}`` → the
    order's status, carrier, tracking number and steps; 404 for a wrong
    number or tail alike; 422 for a malformed request; 429 when limited."""
    try:
        data = await request.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    lang = language(request, str(data.get("lang") or ""))
    result = await answer_for(
        request, str(data.get("order") or ""), str(data.get("phone_tail") or ""), lang
    )
    return JSONResponse(result.body, status_code=result.status)


@router.get("/track", response_class=HTMLResponse)
async def track_page(request: Request) -> HTMLResponse:
    return HTMLResponse(page(language(request)))


@router.post("/track", response_class=HTMLResponse)
async def track_form(request: Request) -> HTMLResponse:
    form = await request.form()
    lang = language(request, str(form.get("lang") or ""))
    number = str(form.get("order") or "")
    result = await answer_for(request, number, str(form.get("phone_tail") or ""), lang)
    return HTMLResponse(page(lang, number, result), status_code=result.status)


STYLE = """
body{font-family:system-ui,"PingFang SC","Noto Sans CJK SC",sans-serif;margin:0;background:#f4f6f8;
color:#1f2328}main{max-width:28rem;margin:0 auto;padding:1rem}h1{font-size:1.4rem}
form,.card{background:#fff;border-radius:.75rem;padding:1rem;margin:1rem 0;
box-shadow:0 1px 3px #0002}label{display:block;margin:.6rem 0 .2rem}input{width:100%;
box-sizing:border-box;font-size:1.1rem;padding:.6rem;border:1px solid #c4c9cf;border-radius:.5rem}
button{width:100%;margin-top:1rem;font-size:1.1rem;padding:.7rem;border:0;border-radius:.5rem;
background:#1a5fd6;color:#fff}.error{color:#b0261f}.hint{color:#59636e;font-size:.9rem}
dt{color:#59636e;margin-top:.5rem}dd{margin:0;font-size:1.1rem}ol{padding-left:1.2rem}
"""


def page(lang: str, number: str = "", result: Answer | None = None) -> str:
    """The lookup page: the form, and the answer when there is one."""
    w = WORDS[lang]
    e = html.escape
    other = "en" if lang == "zh" else "zh"
    found = ""
    if result is not None and result.status == 200:
        b = result.body
        steps = "".join(
            f"<li>{e(s['at'][:16].replace('T', ' '))} · {e(s['what'])}</li>" for s in b["steps"]
        )
        found = (
            f'<section class="card" id="result"><dl><dt>{e(w["status"])}</dt>'
            f'<dd id="status">{e(b["status_text"])}'
            + (f" · {e(b['parcel_text'])}" if b.get("parcel_text") else "")
            + "</dd>"
            + (
                f"<dt>{e(w['carrier'])}</dt><dd>{e(b['carrier'])}</dd>"
                f'<dt>{e(w["tracking"])}</dt><dd id="tracking">{e(b["tracking_number"])}</dd>'
                if b["carrier"]
                else ""
            )
            + f"<dt>{e(w['steps'])}</dt><dd><ol>{steps}</ol></dd></dl></section>"
        )
    elif result is not None:
        found = f'<p class="error" role="alert">{e(result.body["message"])}</p>'
    return f"""<!doctype html>
<html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(w["title"])}</title><style>{STYLE}</style></head>
<body><main><p style="text-align:right"><a href="?lang={other}">{e(w["other"])}</a></p>
<h1>{e(w["title"])}</h1>
<form method="post" action="track?lang={lang}"><input type="hidden" name="lang" value="{lang}">
<label for="order">{e(w["order"])}</label>
<input id="order" name="order" required maxlength="{MAX_NUMBER}" value="{e(number)}"
 autocomplete="off">
<label for="phone_tail">{e(w["tail"])}</label>
<input id="phone_tail" name="phone_tail" required inputmode="numeric" pattern="[0-9]{{4}}"
 maxlength="4" autocomplete="off">
<button type="submit">{e(w["look"])}</button>
<p class="hint">{e(w["hint"])}</p></form>{found}</main></body></html>"""
