"""An order's timeline and state in plain words, for a person at a screen.

admin_api.lookup gives each event a ``kind`` and its ``facts``; this turns
them into one sentence in the viewer's language, and says what to tell a
customer who asks.
"""

from __future__ import annotations

from typing import Any

from admin_api import causes
from console import advice
from console.i18n import N_, Gettext

# Message ids for the words the records use (so they are translated).
TARGET_NAMES = {
    "warehouse": N_("the warehouse"),
    "finance": N_("finance (ERP)"),
    "notification": N_("the notification system"),
    "channel": N_("the sales channel"),
    "customer": N_("the customer"),
}
STATUS_NAMES = {
    "created": N_("created, not paid"),
    "paid": N_("paid"),
    "shipped": N_("shipped"),
    "delivered": N_("delivered"),
    "cancelled": N_("cancelled"),
    "refunded": N_("refunded"),
}
OUTCOMES = {
    "new": N_("checked and accepted as a new order"),
    "update": N_("checked and accepted as an update"),
    "duplicate": N_("a repeat of what we already had: no second effect"),
    "stale": N_("older than what we already had: ignored"),
    "held": N_("checked and held: waits for a person (see below)"),
}
# An after-sale's documents (router/aftersales.py).
DOCUMENTS = {
    "intercept": N_("Intercept (stop the pick)"),
    "reversal": N_("Reversal of the sale"),
    "refund": N_("Refund"),
    "return": N_("Return"),
}
MEDIA = {"email": N_("email"), "sms": N_("SMS"), "wechat_work": N_("WeCom"), "none": N_("nobody")}
# Which dot colour a kind of event gets on the timeline.
TONE = {
    "document": "held",
    "too_late": "bad",
    "dead_letter": "bad",
    "held": "held",
    "rejected": "bad",
    "delivered": "ok",
    "told": "ok",
    "released": "ok",
}


def target_name(_: Gettext, target: str) -> str:
    return _(TARGET_NAMES[target]) if target in TARGET_NAMES else target


def status_name(_: Gettext, status: str | None) -> str:
    return _(STATUS_NAMES[status]) if status in STATUS_NAMES else str(status)


def sentence(_: Gettext, event: dict[str, Any]) -> str:
    """One timeline event as a sentence."""
    kind = event.get("kind", "")
    facts: dict[str, Any] = event.get("facts") or {}
    by = event.get("by") or ""
    if kind == "received":
        return _("Received from %(channel)s", channel=facts.get("channel", ""))
    if kind == "routed":
        outcome = facts.get("outcome", "")
        return _(OUTCOMES[outcome]) if outcome in OUTCOMES else _("Checked: %(o)s", o=outcome)
    if kind == "status":
        said = _("Status: %(status)s", status=status_name(_, facts.get("status")))
        if facts.get("carrier"):
            said += " · " + _(
                "carrier %(carrier)s, tracking no. %(no)s",
                carrier=facts["carrier"],
                no=facts.get("tracking_number") or "",
            )
        return said
    if kind == "sent":
        return _("Sent to %(target)s", target=target_name(_, facts.get("target", "")))
    if kind == "not_sent":
        return _("Waiting to be sent to %(target)s", target=target_name(_, facts.get("target", "")))
    if kind == "document":
        paper = str(facts.get("document", ""))
        said = _(
            "%(document)s for %(target)s (after-sale %(id)s)",
            document=_(DOCUMENTS[paper]) if paper in DOCUMENTS else paper,
            target=target_name(_, facts.get("target", "")),
            id=facts.get("after_sale", ""),
        )
        return said if facts.get("sent") else said + " · " + _("not sent yet")
    if kind == "held":
        if facts.get("cause") == "sku_not_mapped":
            skus = str(event.get("detail") or "").removeprefix("SKU not mapped: ")
            return _("Held: platform SKU %(skus)s has no mapping yet", skus=skus)
        return _("Held for approval")
    if kind == "released":
        return _("Released by %(by)s", by=by)
    if kind == "rejected":
        return _("Rejected by %(by)s", by=by)
    if kind == "delivered":
        said = _(
            "%(target)s accepted it (answer %(status)s, %(attempts)s attempt(s))",
            target=target_name(_, facts.get("target", "")),
            status=facts.get("status"),
            attempts=facts.get("attempts"),
        )
        if facts.get("mapping_version") is not None:
            said += " · " + _("SKUs mapped with version %(v)s", v=facts["mapping_version"])
        return said
    if kind == "too_late":
        return _(
            "%(target)s answered: too late, already shipped (the goods will come back)",
            target=target_name(_, facts.get("target", "")),
        )
    if kind == "superseded":
        return _(
            "%(target)s already had a newer version", target=target_name(_, facts.get("target", ""))
        )
    if kind == "told":
        return _(
            "Customer told by %(medium)s: %(about)s",
            medium=_(MEDIA.get(facts.get("medium", ""), facts.get("medium", ""))),
            about=status_name(_, facts.get("about"))
            if facts.get("about") != "delay"
            else _("delay"),
        )
    if kind == "not_told":
        return _("Customer not told")
    if kind == "dead_letter":
        if facts.get("reason") == "endpoint_timeout":
            return _(
                "Stuck: no answer in time. The system may have the order: "
                "check there before retrying"
            )
        cause = causes.cause_of(str(facts.get("reason", "")), event.get("detail"))
        return _("Stuck, needs a person: %(cause)s", cause=advice.title(_, cause))
    if kind == "dead_letter_retried":
        return _("Retried by %(by)s", by=by)
    if kind == "dead_letter_discarded":
        return _("Discarded by %(by)s", by=by)
    return str(event.get("event", ""))


def tone(event: dict[str, Any]) -> str:
    return TONE.get(str(event.get("kind", "")), "")


def customer_answer(_: Gettext, order: dict[str, Any], timeline: list[dict[str, Any]]) -> str:
    """What customer service can tell the caller, from where the order is."""
    status = order.get("status")
    open_letters = {e.get("dead_letter_id") for e in timeline if e.get("kind") == "dead_letter"}
    closed = {
        e.get("dead_letter_id")
        for e in timeline
        if e.get("kind") in ("dead_letter_retried", "dead_letter_discarded")
    }
    held = [e for e in timeline if e.get("kind") == "held"]
    if held and not any(e.get("kind") in ("released", "rejected") for e in timeline):
        if (held[-1].get("facts") or {}).get("cause") == "sku_not_mapped":
            return _(
                "The order is checked and waits for a product code to be set up; "
                "tell the customer it will ship soon."
            )
        return _("The order is waiting for an approval before it goes to the warehouse.")
    if open_letters - closed:
        return _(
            "The order is stuck and operations has been alerted; tell the customer we are on it."
        )
    shipment = (order.get("order") or {}).get("shipment") or {}
    if status in ("shipped", "delivered") and shipment:
        return _(
            "Shipped with %(carrier)s, tracking no. %(no)s.",
            carrier=shipment.get("carrier", ""),
            no=shipment.get("tracking_number", ""),
        )
    if status == "paid":
        if any(
            e.get("kind") == "delivered" and (e.get("facts") or {}).get("target") == "warehouse"
            for e in timeline
        ):
            return _("The warehouse has the order and will ship it.")
        return _("The order is paid and on its way to the warehouse.")
    if status in ("cancelled", "refunded"):
        return _("The order was %(status)s.", status=status_name(_, status))
    return _("The order is %(status)s.", status=status_name(_, status))
