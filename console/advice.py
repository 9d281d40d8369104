"""Dead-letter causes in plain words: what each means and what to do.

The causes are admin_api.causes.CAUSES; these are the console's message ids
for them (so they are translated), and the advice a person acts on.
"""

from __future__ import annotations

from console.i18n import N_, Gettext

CAUSE_TITLES = {
    "sku_not_mapped": N_("SKU not known to the receiving system"),
    "bad_address": N_("Address missing or wrong"),
    "token_expired": N_("Credentials refused or expired"),
    "endpoint_down": N_("Receiving system or platform not answering"),
    "erp_rejected": N_("Receiving system refused the order"),
    "invalid_order": N_("Order breaks a business rule"),
    "unreadable_input": N_("Message is not a readable order"),
    "platform_refused": N_("Platform refused the request"),
    "other": N_("Other"),
}
CAUSE_ADVICE = {
    "sku_not_mapped": N_(
        "Add the SKU to the receiving system (or correct it in the order), then retry the group."
    ),
    "bad_address": N_(
        "Ask the customer or the channel for the full address, edit the order, retry."
    ),
    "token_expired": N_(
        "Renew the channel's or the system's credentials in the configuration, "
        "then retry the group."
    ),
    "endpoint_down": N_(
        "The system may have received it before it stopped answering: check there first. "
        "When it answers again, retry; a retry cannot book it twice where the system honours "
        "the idempotency key."
    ),
    "erp_rejected": N_(
        "Read the system's answer below, correct the data there or in the order, retry."
    ),
    "invalid_order": N_(
        "Correct the field named below (edit and retry), or discard with a reason."
    ),
    "unreadable_input": N_(
        "The channel sent something that is not an order. Discard it with a reason, "
        "or ask the integrator."
    ),
    "platform_refused": N_("Check the order exists on the platform and the app's permissions."),
    "other": N_("Read the detail below; ask the integrator if it is unclear."),
}


def title(_: Gettext, cause: str) -> str:
    return _(CAUSE_TITLES.get(cause, CAUSE_TITLES["other"]))


def advice(_: Gettext, cause: str) -> str:
    return _(CAUSE_ADVICE.get(cause, CAUSE_ADVICE["other"]))


# The canonical order's fields as a person names them (an edit's errors).
FIELD_NAMES = {
    "total": N_("order total"),
    "currency": N_("currency"),
    "customer.phone": N_("buyer's phone"),
    "customer.name": N_("buyer's name"),
    "customer.email": N_("buyer's e-mail"),
    "shipping_address.province": N_("province"),
    "shipping_address.city": N_("city"),
    "shipping_address.district": N_("district"),
    "shipping_address.street": N_("street address"),
    "items": N_("items"),
    "sku": N_("SKU"),
    "quantity": N_("quantity"),
    "unit_price": N_("unit price"),
    "placed_at": N_("order time"),
    "external_id": N_("channel order id"),
    "note": N_("note"),
    "body": N_("the message"),
}


def field_name(_: Gettext, field: str) -> str:
    """``items.0.sku`` -> "SKU (items.0.sku)": the words first, the path after."""
    last = field.rsplit(".", 1)[-1]
    known = FIELD_NAMES.get(field) or FIELD_NAMES.get(last)
    return f"{_(known)} ({field})" if known else field
