"""A parcel's way to the door: the carrier's tracking events on the order.

``CanonicalOrder.tracking`` holds where the parcel is (``state``), when the
carrier last said so, and its events, newest first. It is filled by the
tracking intake (router/tracking.py) from a tracking aggregator's push or
from a poll of its query API (connectors/kuaidi100.py); ``delivered`` makes
the order ``delivered`` and closes it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain the NUL character")
    return value


Text = Annotated[str, AfterValidator(_no_nul), Field(max_length=500)]
# The message id suffix of the one message telling a customer of a problem
# with the parcel (an exception, or no news for too long): once per order.
PARCEL_NOTICE_SUFFIX = "-parcel-customer"


class ParcelState(StrEnum):
    IN_TRANSIT = "in_transit"  # picked up, on its way (在途, 揽收, 转投)
    OUT_FOR_DELIVERY = "out_for_delivery"  # with the courier (派件)
    DELIVERED = "delivered"  # signed for (签收): the order closes
    EXCEPTION = "exception"  # a problem: lost, refused, returned (疑难, 退签, 退回)


class TrackingEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    at: AwareDatetime
    description: Text = Field(description="What the carrier wrote (the place included).")
    state: ParcelState | None = None


class Tracking(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: ParcelState
    updated_at: AwareDatetime = Field(description="The newest event's time.")
    events: list[TrackingEvent] = Field(default_factory=list, max_length=200)


class TrackingReport(BaseModel):
    """What a carrier (through an aggregator) says of one parcel."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tracking_number: str = Field(pattern=r"^[A-Za-z0-9-]{4,40}$")
    state: ParcelState
    events: list[TrackingEvent] = Field(default_factory=list, max_length=200)
