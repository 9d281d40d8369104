"""Request and response bodies of the admin API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, Field

DeadLetterStatus = Literal["open", "retried", "discarded"]


def _storable(value: datetime) -> datetime:
    """A time the database can hold: in UTC (a time without a zone is taken as
    UTC) and within years 1 to 9999 once there; else a 422, not a 500."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once in UTC (years 1 to 9999)") from None


# A time to filter by, in a query or a body.
Instant = Annotated[datetime, AfterValidator(_storable)]


class DeadLetterSummary(BaseModel):
    id: int
    message_id: str
    queue: str
    channel: str | None
    order_number: str | None
    reason: str
    detail: str | None
    attempts: int
    status: DeadLetterStatus
    first_failed_at: datetime
    last_failed_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


class DeadLetterDetail(DeadLetterSummary):
    exchange: str
    routing_key: str
    exception: str | None
    headers: dict[str, Any]
    body: str
    body_encoding: str


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    total: int
    limit: int
    offset: int
    items: list[T]


class DeadLetterFilter(BaseModel):
    queue: str | None = None
    reason: str | None = None
    channel: str | None = None
    status: DeadLetterStatus | None = "open"
    since: Instant | None = None
    until: Instant | None = None


class RetryRequest(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class RetryManyRequest(DeadLetterFilter):
    status: Literal["open"] = "open"
    limit: int = Field(default=100, ge=1, le=1000)
    dry_run: bool = False
    note: str | None = Field(default=None, max_length=2000)


class DiscardRequest(BaseModel):
    note: str = Field(min_length=1, max_length=2000, description="Why it is discarded")


class RetryResult(BaseModel):
    id: int
    message_id: str
    status: Literal["retried"]


class RetryManyResult(BaseModel):
    matched: int
    retried: list[RetryResult]
    dry_run: bool


class RejectedRequestOut(BaseModel):
    id: int
    channel: str
    status_code: int
    reason: str
    detail: str
    remote_addr: str | None
    headers: dict[str, Any]
    body_excerpt: str
    body_size: int
    received_at: datetime


class NotificationOut(BaseModel):
    id: int
    message_id: str
    medium: str = Field(description="email, sms, wechat_work, or none (nothing applied: why)")
    order_number: str
    event: str
    language: str
    recipient: str | None = Field(description="masked")
    subject: str | None
    body: str | None = Field(description="as sent; left out for viewers (it names the buyer)")
    sent_at: datetime


class AuditEntry(BaseModel):
    id: int
    actor: str
    action: str
    target_type: str
    target_id: str | None
    detail: dict[str, Any]
    at: datetime


HoldStatus = Literal["open", "released", "rejected"]


class HoldOut(BaseModel):
    id: int
    order_id: int
    order_number: str
    suspected_of: str | None
    reason: str
    status: HoldStatus
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    note: str | None
    approvals_needed: int
    approved_by: str | None = Field(description="the first approver, when two are needed")
    cause: str | None = Field(
        default=None,
        description="null: waits for approval; sku_not_mapped: waits for a SKU's mapping "
        "(released by POST /mappings/retry-passing once mapped)",
    )


class HoldDecision(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class HoldReleased(BaseModel):
    id: int
    status: Literal["released", "awaiting second approval"]
    sent: list[str] = Field(description="message ids now on their way to the systems")


class OrderMatch(BaseModel):
    order_number: str
    channel: str
    shop: str
    external_id: str
    status: str
    version: int
    updated_at: str | None
    order: dict[str, Any] = Field(description="the latest accepted canonical order")


class TimelineEvent(BaseModel):
    at: str | None
    event: str
    version: int | None = None
    message_id: str | None = None
    dead_letter_id: int | None = None
    by: str | None = None
    detail: str | None = None


class OrderStory(OrderMatch):
    timeline: list[TimelineEvent]


class Unrouted(BaseModel):
    channel: str
    external_id: str
    timeline: list[TimelineEvent] = Field(
        description="dead letters of an order the router refused (it has no number)"
    )


class OrderSearch(BaseModel):
    orders: list[OrderMatch]
    unrouted: Unrouted | None = None


class KeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Literal["viewer", "operator", "admin"]


class KeyOut(BaseModel):
    id: int
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="shown once; only its SHA-256 digest is kept")


class CauseRetry(BaseModel):
    limit: int = Field(default=100, ge=1, le=1000)
    dry_run: bool = False
    note: str | None = Field(default=None, max_length=2000)


class Investigation(BaseModel):
    owner: str = Field(min_length=1, max_length=100, description="who is looking into it")
    note: str | None = Field(default=None, max_length=2000)


class EditRetry(BaseModel):
    body: str = Field(min_length=1, max_length=1_000_000, description="the corrected body")
    reason: str = Field(min_length=1, max_length=2000, description="why it was edited")


class RetryJobRequest(BaseModel):
    queue: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=64)
    cause: str | None = Field(default=None, max_length=64)
    rate: float = Field(default=5.0, gt=0, le=100, description="retries per second at most")
    dry_run: bool = Field(default=False, description="only count what it would touch")
    note: str | None = Field(default=None, max_length=2000)
