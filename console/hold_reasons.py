"""Why an order is held, in the viewer's language.

The router records a hold's reasons as English text joined by "; " (see
router/approval.py and router/batch.py); each known form is matched here and
said again through the catalog. A reason of another form is shown as it is.
"""

from __future__ import annotations

import re

from console.i18n import N_, Gettext

TWO_APPROVALS = re.compile(r"^total (\S+) ([A-Z]{3}) above (\S+): two approvals needed$")
ABOVE = re.compile(r"^total (\S+) ([A-Z]{3}) above (\S+)$")
ADDRESS = re.compile(r"^shipping address without (.+)$")
UNMAPPED = re.compile(r"^SKU not mapped: (.+)$")  # router/mapping_gate.py
TWIN = re.compile(
    r"^suspected duplicate of (\S+) from channel (\S+): same (.+), placed (\d+) min apart$"
)
# What a suspected duplicate shares (router/suspicion.py's parts).
SHARED_PARTS = {
    "phone": N_("phone"),
    "email": N_("e-mail"),
    "items": N_("items"),
    "total": N_("total"),
    "address": N_("address"),
}
ADDRESS_PARTS = {"province": N_("province"), "city": N_("city"), "street": N_("street")}


def reasons_in_words(_: Gettext, reason: str) -> list[str]:
    said = []
    for part in (p.strip() for p in reason.split(";") if p.strip()):
        said.append(_one(_, part))
    return said


def _one(_: Gettext, part: str) -> str:
    if m := TWO_APPROVALS.match(part):
        return _(
            "Total %(total)s %(currency)s is above %(limit)s: two different people must approve",
            total=m[1],
            currency=m[2],
            limit=m[3],
        )
    if m := ABOVE.match(part):
        return _(
            "Total %(total)s %(currency)s is above %(limit)s", total=m[1], currency=m[2], limit=m[3]
        )
    if m := ADDRESS.match(part):
        missing = _(", ").join(_(ADDRESS_PARTS.get(p.strip(), p.strip())) for p in m[1].split(","))
        return _("The shipping address has no %(parts)s", parts=missing)
    if m := UNMAPPED.match(part):
        return _(
            "No mapping yet for platform SKU %(skus)s: add it on the SKU mapping page, "
            "then send the orders that pass",
            skus=m[1],
        )
    if part == "first order from a new customer":
        return _("First order from a new customer")
    if m := TWIN.match(part):
        return _(
            "Looks like order %(twin)s from %(channel)s (same %(what)s, %(minutes)s minutes apart)",
            twin=m[1],
            channel=m[2],
            what=_(", ").join(_(SHARED_PARTS.get(p.strip(), p.strip())) for p in m[3].split(",")),
            minutes=m[4],
        )
    return part
