"""orderbus's tables. Every idempotency rule is a unique constraint here, so it
holds with any number of processes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import DateTime as _DateTime
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite too)."""

    impl = _DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("orderbus stores timezone-aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stamp: datetime = value
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def DateTime(timezone: bool = True) -> UTCDateTime:  # noqa: N802 - reads like a type
    return UTCDateTime()


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = BigInteger().with_variant(Integer(), "sqlite")

# One row per business order: the dedup record and the order's state.
orders = Table(
    "orders",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("order_number", String(32), nullable=False, unique=True),
    Column("channel", String(64), nullable=False),
    Column("shop", String(200), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_rank", Integer, nullable=False),
    Column("source_version", Integer, nullable=False),
    Column("source_updated_at", String(40), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("version", Integer, nullable=False, doc="orderbus's own revision counter"),
    Column("body", Text, nullable=False, doc="latest accepted canonical order (JSON)"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column(
        "fingerprint",
        String(64),
        nullable=True,
        doc="what a duplicate from another channel would share (router/suspicion.py)",
    ),
    Column("placed_at", DateTime(timezone=True), nullable=True),
    Column("customer_key", String(64), nullable=True, doc="hashed phone, else email"),
    Column(
        "hold_status",
        String(16),
        nullable=True,
        doc="open|released|rejected when held as a suspected duplicate (holds)",
    ),
    Column(
        "delay_noticed_at",
        DateTime(timezone=True),
        nullable=True,
        doc="when the delay watch told the customer a paid order is late (targets/notify/)",
    ),
    Column("tracking_number", String(40), nullable=True, doc="the shipment's, to find the order"),
    Column("parcel_state", String(20), nullable=True, doc="the tracking's state (canonical)"),
    Column("parcel_updated_at", DateTime(timezone=True), nullable=True, doc="the carrier's last"),
    Column(
        "parcel_noticed_at",
        DateTime(timezone=True),
        nullable=True,
        doc="when the customer was told of a problem with the parcel (once: router/tracking.py)",
    ),
    UniqueConstraint("channel", "shop", "external_id", name="uq_orders_business_key"),
    # lookalikes: the latest few of each channel, by time (router/batch.py)
    Index("ix_orders_fingerprint_channel_placed_at", "fingerprint", "channel", "placed_at"),
    Index("ix_orders_customer_key", "customer_key"),
    Index("ix_orders_external_id", "external_id"),  # the customers' lookup by platform number
    Index("ix_orders_tracking_number", "tracking_number"),  # a carrier's event finds its order
    # a day's orders by hour and channel from the index alone (the dashboard), phone tail
    Index("ix_orders_created_at_channel", "created_at", "channel"),
    Index("ix_orders_status", "status"),  # the shipped parcels the alert rule looks at
    # Only paid orders the customer was not yet told are late about: the
    # delay watch reads just those, however many orders there are.
    Index(
        "ix_orders_paid_unnoticed",
        "updated_at",
        postgresql_where=text("status = 'paid' AND delay_noticed_at IS NULL"),
        sqlite_where=text("status = 'paid' AND delay_noticed_at IS NULL"),
    ),
)

# One row per input message the router processed: its tracking record, written
# in the same transaction as the order state and the outbox rows.
arrivals = Table(
    "arrivals",
    metadata,
    Column("message_id", String(100), primary_key=True),
    Column("order_id", ID, nullable=True),
    Column("channel", String(64), nullable=False),
    Column("external_id", String(200), nullable=True),
    Column("outcome", String(16), nullable=False, doc="new|update|duplicate|stale|held"),
    Column("detail", Text, nullable=True),
    Column("order_version", Integer, nullable=True),
    Column("correlation_id", String(100), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False),
    Column(
        "order_number",
        String(32),
        nullable=True,
        doc="the order's number (rows before migration 0037: none; the order's row has it)",
    ),
    Index("ix_arrivals_order_id", "order_id"),
    Index("ix_arrivals_received_at", "received_at"),  # a day's orders, a window's inputs
    # a channel's last arrival; a channel's day's orders (a day's reconciliation)
    # from the index alone: what each arrival made is in it too (PostgreSQL)
    Index(
        "ix_arrivals_channel_received_at_order",
        "channel",
        "received_at",
        postgresql_include=["order_id", "order_number", "external_id", "outcome", "order_version"],
    ),
)

# Transactional outbox: messages to publish, committed with the state that caused them.
outbox = Table(
    "outbox",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    # Not unique: an admin retry publishes the same message id again, and the
    # consumers' inbox, keyed by it, keeps the second copy from having an effect.
    Column("message_id", String(100), nullable=False),
    Column("exchange", String(200), nullable=False),
    Column("routing_key", String(200), nullable=False),
    Column("headers", JSON, nullable=False),
    Column("correlation_id", String(100), nullable=True),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("order_number", String(32), nullable=True, doc="the order the message is about"),
    Column(
        "order_id",
        ID,
        nullable=True,
        doc="the order's row, when its writer knew it (the router, a hold's decision); "
        "rows from before migration 0038, a retried dead letter and a delay notice have none",
    ),
    # An order's messages, for its timeline and a day's reconciliation (which
    # reads the ids from the index alone): by the order's row, whose ids grow
    # with time, so a day's orders' messages sit side by side (by the hashed
    # number they were a page an order); by number the rows without an id.
    Index("ix_outbox_order_id_message", "order_id", "message_id"),
    Index(
        "ix_outbox_number_without_id",
        "order_number",
        "message_id",
        postgresql_where=text("order_id IS NULL"),
        sqlite_where=text("order_id IS NULL"),
    ),
    Index("ix_outbox_created_at", "created_at"),  # the alert on paid orders not delivered
    # Only the unpublished rows, in id order: the relay's "next batch" reads
    # just that many entries however large the outbox grows (migration 0003).
    Index(
        "ix_outbox_unpublished",
        "id",
        postgresql_where=text("published_at IS NULL"),
        sqlite_where=text("published_at IS NULL"),
    ),
)

# Consumer inbox: (consumer, message id) delivered once.
inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(64), primary_key=True),
    Column("message_id", String(100), primary_key=True),
    Column("order_number", String(32), nullable=True),
    Column("order_version", Integer, nullable=True),
    Column(
        "outcome",
        String(16),
        nullable=False,
        server_default="delivered",
        doc="delivered; superseded: a newer version of the order was delivered first; "
        "too_late: the warehouse answered an intercept that the order had shipped",
    ),
    Column("response_status", Integer, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=False),
    Column(
        "mapping_version",
        Integer,
        nullable=True,
        doc="the mapping tables' version the delivered copy was mapped with",
    ),
    Column(
        "latency_ms",
        Integer,
        nullable=True,
        doc="from the delivered revision's arrival at orderbus to this row (the dashboard's "
        "latency); empty on rows written before migration 0031",
    ),
    # what a system's inbox has of a batch's orders (the consumers), an order's
    # timeline, a message of it not delivered yet (a day's reconciliation)
    Index("ix_inbox_order_consumer_message", "order_number", "consumer", "message_id"),
    # a day's deliveries and latencies from the index alone (the dashboard)
    Index("ix_inbox_delivered_at_consumer_latency", "delivered_at", "consumer", "latency_ms"),
    # the messages delivered in a time (a day's reconciliation: side by side)
    Index("ix_inbox_delivered_at_message", "delivered_at", "message_id"),
)

# Dead letters: one row per (queue, message id); a repeated failure updates it.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("message_id", String(100), nullable=False),
    Column("queue", String(200), nullable=False),
    Column("exchange", String(200), nullable=False),
    Column("routing_key", String(200), nullable=False),
    Column("channel", String(64), nullable=True),
    Column("order_number", String(32), nullable=True),
    Column("reason", String(64), nullable=False),
    Column("detail", Text, nullable=True),
    Column("exception", Text, nullable=True),
    Column("headers", JSON, nullable=False),
    Column("body", Text, nullable=False, doc="original body; base64 when not UTF-8"),
    Column("body_encoding", String(16), nullable=False, default="utf-8"),
    Column("attempts", Integer, nullable=False),
    Column("status", String(16), nullable=False, doc="open|retried|discarded"),
    Column("first_failed_at", DateTime(timezone=True), nullable=False),
    Column("last_failed_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("resolved_by", String(100), nullable=True),
    Column(
        "cause",
        String(32),
        nullable=True,
        doc="the business cause (admin_api/causes.py), set when recorded; empty on rows "
        "recorded before migration 0032, which are classified when read",
    ),
    UniqueConstraint("queue", "message_id", name="uq_dead_letters_queue_message"),
    Index("ix_dead_letters_status_last", "status", "last_failed_at"),
    # the exceptions page's counts and the metrics', from the indexes alone
    Index("ix_dead_letters_status_cause_last", "status", "cause", "last_failed_at"),
    Index("ix_dead_letters_queue_reason_status", "queue", "reason", "status"),
    Index("ix_dead_letters_first_failed_at", "first_failed_at"),  # a window's (alerts, dashboard)
    Index("ix_dead_letters_order_number", "order_number"),  # an order's timeline
)

# Requests a connector refused (bad signature, bad body...), kept for inspection.
rejected_requests = Table(
    "rejected_requests",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Column("remote_addr", String(64), nullable=True),
    Column("headers", JSON, nullable=False),
    Column("body_excerpt", Text, nullable=False, doc="first 4 KiB, base64 when not UTF-8"),
    Column("body_size", Integer, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("spool_key", String(36), nullable=True, doc="set when it came through the spool"),
    Index("ix_rejected_requests_received_at", "received_at"),
    UniqueConstraint("spool_key", name="uq_rejected_requests_spool_key"),
)

# Who did what through the admin API.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("actor", String(100), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32), nullable=False),
    Column("target_id", String(100), nullable=True),
    Column("detail", JSON, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Admin API keys (admin_api/auth.py): only the SHA-256 digest of a key is kept.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(16), nullable=False, doc="viewer|operator|admin"),
    Column("key_digest", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# Incidents the alert rules found (admin_api/alerts.py): one open row per rule and
# subject until the condition clears; ``notified`` says what the webhook was told.
alerts = Table(
    "alerts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("rule", String(32), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("status", String(16), nullable=False, doc="open|resolved"),
    Column("summary", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("notified", String(16), nullable=True, doc="None|firing|resolved"),
    Index("ix_alerts_status", "status", "rule", "subject"),
)

# A business cause of dead letters (admin_api/causes.py) someone is looking into.
dead_letter_investigations = Table(
    "dead_letter_investigations",
    metadata,
    Column("cause", String(64), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("note", Text, nullable=True),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("set_by", String(100), nullable=False),
)

# Dead letters retried in the background at a set pace (admin_api/retry_jobs.py).
retry_jobs = Table(
    "retry_jobs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("filter", JSON, nullable=False),
    Column("ids", JSON, nullable=False, doc="the dead letters it will touch, counted at the start"),
    Column("rate", Float, nullable=False, doc="retries per second at most"),
    Column("status", String(16), nullable=False, doc="running|done|cancelled"),
    Column("done", Integer, nullable=False),
    Column("skipped", Integer, nullable=False, doc="no longer open when their turn came"),
    Column("note", Text, nullable=True),
    Column("created_by", String(100), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

# Where each pull connector got to: the update time of the newest order it
# published (advanced only after every order of a poll was confirmed).
poll_cursors = Table(
    "poll_cursors",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("position", String(64), nullable=False, doc="ISO 8601 UTC update time"),
    Column("polled_at", DateTime(timezone=True), nullable=False),
)

# Orders held for a person: suspected duplicates of an order from another
# channel. Nothing of a held order reaches the systems until it is released.
holds = Table(
    "holds",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("order_id", ID, nullable=False, unique=True),
    Column("order_number", String(32), nullable=False),
    Column("suspected_of", String(32), nullable=True, doc="the order it seems to repeat"),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False, doc="open|released|rejected"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("note", Text, nullable=True),
    Column("approvals_needed", Integer, nullable=False, server_default="1"),
    Column("approved_by", String(100), nullable=True, doc="the first of two approvers"),
    Column(
        "cause",
        String(40),
        nullable=True,
        doc="NULL: waits for approval; sku_not_mapped: waits for a SKU's mapping",
    ),
    Index("ix_holds_status", "status", "id"),
    Index("ix_holds_cause", "cause", "status"),
)

# What was sent to a customer (targets/notify/): one row per message and
# medium, written right after that medium took it, so a redelivery of the
# message sends only what was not sent yet.
notifications = Table(
    "notifications",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("message_id", String(100), nullable=False, doc="the customer target's message"),
    Column("medium", String(16), nullable=False, doc="email|sms|wechat_work|none"),
    Column("order_number", String(32), nullable=False),
    Column("event", String(16), nullable=False, doc="an order status, or delay"),
    Column("language", String(8), nullable=False),
    Column("recipient", String(200), nullable=True, doc="masked"),
    Column("subject", Text, nullable=True),
    Column("body", Text, nullable=False, doc="as sent; 'none': why nothing was sent"),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("message_id", "medium", name="uq_notifications_message_medium"),
    Index("ix_notifications_order", "order_number"),
)


# Console sessions (console/sessions.py): an API key exchanged for a cookie.
# Only digests are kept: of the cookie's token, and of the key it stands for
# (so revoking the key ends its sessions at their next request).
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("token_digest", String(64), nullable=False, unique=True),
    Column("key_digest", String(64), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True, doc="logged out"),
    Index("ix_console_sessions_expires_at", "expires_at"),
)


# The daily digest (console/digest.py): one row per day, claimed before the
# message is sent and marked once the robot took it, so many admin processes
# send each day's digest once.
digests = Table(
    "digests",
    metadata,
    Column("day", String(10), primary_key=True, doc="the day summed up, YYYY-MM-DD"),
    Column("status", String(16), nullable=False, doc="sending|sent"),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
)


# Mapping tables (infra/mappings.py, canonical/mapping.py): a channel's SKU ->
# our SKUs (plain, a multiple, or a bundle), and our SKUs' codes in each
# system. ``mapping_state`` holds one version, raised by every change in the
# change's own transaction: a consumer reloads the tables when it moves.
sku_mappings = Table(
    "sku_mappings",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False, doc="'' for every channel"),
    Column("shop", String(200), nullable=False, doc="'' for every shop of the channel"),
    Column("platform_sku", String(200), nullable=False),
    Column("components", JSON, nullable=False, doc="[{sku, quantity, share}]"),
    Column("note", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(100), nullable=False),
    UniqueConstraint("channel", "shop", "platform_sku", name="uq_sku_mappings_key"),
)

sku_codes = Table(
    "sku_codes",
    metadata,
    Column("internal_sku", String(200), primary_key=True),
    Column("target", String(64), primary_key=True, doc="warehouse, finance, ..."),
    Column("code", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(100), nullable=False),
)

mapping_state = Table(
    "mapping_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
)


# The platform's own order beside ours (原始单): each accepted webhook body as
# it came, under the message id it was published with (the router's arrival
# of that id is the revision it became). Kept ORDERBUS_RAW_RETENTION_DAYS.
raw_payloads = Table(
    "raw_payloads",
    metadata,
    Column("message_id", String(100), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("headers", JSON, nullable=False, doc="as sent, signatures redacted"),
    Column("body", Text, nullable=False, doc="base64 when not UTF-8"),
    Column("body_encoding", String(16), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_raw_payloads_channel_received", "channel", "received_at"),
)


# The shops' accounts in our books, and where orders ship from (the mapping
# tables, canonical/mapping.py): read with the product mappings.
shop_accounts = Table(
    "shop_accounts",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("shop", String(200), primary_key=True, doc="'' for every shop of the channel"),
    Column("customer", String(200), nullable=True, doc="the ERP customer code"),
    Column("department", String(200), nullable=True),
    Column("settlement_account", String(200), nullable=True),
    Column("warehouse", String(200), nullable=True, doc="the shop's warehouse, unless a rule says"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(100), nullable=False),
)

warehouse_rules = Table(
    "warehouse_rules",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("priority", Integer, nullable=False, doc="lower first"),
    Column("channel", String(64), nullable=False, doc="'' for any"),
    Column("province", String(64), nullable=False, doc="'' for any; 浙江 matches 浙江省"),
    Column("sku", String(200), nullable=False, doc="'' for any: an order holding this SKU"),
    Column("warehouse", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(100), nullable=False),
)


# One carrier, each system's code for it (canonical/mapping.py): a channel's
# (for write-back) or a target's (an ERP's, a warehouse's).
carrier_codes = Table(
    "carrier_codes",
    metadata,
    Column("carrier", String(100), primary_key=True, doc="our code or name, e.g. SF, 顺丰速运"),
    Column("system", String(64), primary_key=True, doc="a channel (write-back) or a target"),
    Column("code", String(100), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(100), nullable=False),
)


# The customers' own lookups (connectors/order_lookup.py), counted per client
# address and per order number in fixed windows, so the limits hold across
# ingest processes: key "client:<address>" or "order:<number>".
lookup_attempts = Table(
    "lookup_attempts",
    metadata,
    Column("key", String(120), primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("count", Integer, nullable=False),
)

# Stock back to the channels (router/stock.py, targets/stock_push.py): each
# SKU's available units as the warehouse last said (an older level never
# overwrites a newer one), and each channel listing's quantity to send, with
# what was sent (sent again only when it changes).
stock_levels = Table(
    "stock_levels",
    metadata,
    Column("sku", String(200), primary_key=True),
    Column("available", Integer, nullable=False),
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
stock_pushes = Table(
    "stock_pushes",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("platform_sku", String(200), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("pushed_quantity", Integer, nullable=True),
    Column("pushed_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
)

component_heartbeats = Table(
    "component_heartbeats",
    metadata,
    Column("component", String(32), primary_key=True, doc="router, consumers, ingest, admin"),
    Column("instance", String(128), primary_key=True, doc="host:pid of the process"),
    Column("queues", JSON, nullable=False, doc="the queues it consumes"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("beat_at", DateTime(timezone=True), nullable=False),
)


# The reconciliation of each day whose arrivals, outbox and inbox rows were
# deleted by the history retention (admin_api/retention.py): a day kept here
# is answered from here, entry for entry, as it was before the rows went.
reconciled_days = Table(
    "reconciled_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("timezone", String(64), primary_key=True),
    Column("refused_requests", JSON, nullable=False, doc="channel -> requests refused"),
    Column("kept_at", DateTime(timezone=True), nullable=False),
)

reconciled_orders = Table(
    "reconciled_orders",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("external_id", String(200), nullable=True),
    Column("order_number", String(32), nullable=True),
    Column("state", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_reconciled_orders_day_channel", "day", "channel"),
    Index("ix_reconciled_orders_order_number", "order_number"),
)


# What each process counted (infra/counters.py), by metric and labels; the
# metrics endpoint sums a metric's rows.
metric_counts = Table(
    "metric_counts",
    metadata,
    Column("metric", String(64), primary_key=True),
    Column("labels", String(400), primary_key=True, doc="label values joined by \\x1f"),
    Column("instance", String(200), primary_key=True, doc="host:pid of the process"),
    Column("value", Float, nullable=False),
)
