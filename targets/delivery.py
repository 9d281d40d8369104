"""Delivery of an order to an existing system over HTTP.

The request carries ``Idempotency-Key: <message id>``: orderbus delivers at
least once and the key lets the target drop a copy (e.g. after a crash between
its 200 and our inbox commit).

The request goes out through a :class:`~infra.transports.Transport`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from canonical.errors import (
    DeliveryRejected,
    DocumentNotSupported,
    EndpointUnavailable,
    PermanentError,
)
from infra.transports import Transport

if TYPE_CHECKING:
    from targets.adapters.base import TargetAdapter

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


ATTEMPT_HEADER = "X-Orderbus-Attempt"


class GaveUp(PermanentError):
    """A transient failure outlived its retries: dead-letter with the cause's reason."""

    def __init__(self, cause: EndpointUnavailable, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempts: {cause.detail}", reason=cause.reason)
        self.attempts = attempts


@dataclass(frozen=True)
class Sent:
    status_code: int
    attempts: int


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 4.0


class HttpDelivery:
    """Deliver an order: POST its canonical JSON to ``url``, or, with an
    ``adapter`` (targets/adapters/), the request that system's API wants."""

    def __init__(
        self,
        target: str,
        url: str,
        transport: Transport,
        policy: RetryPolicy = RetryPolicy(),
        adapter: TargetAdapter | None = None,
    ) -> None:
        self.target = target
        self.url = url
        self.transport = transport
        self.policy = policy
        self.adapter = adapter

    def _send_once(self, body: bytes, headers: dict[str, str]) -> int:
        if self.adapter is not None:
            return self._send_adapted(body, headers)
        try:
            response = self.transport.post(self.url, body, headers)
        except EndpointUnavailable as exc:
            # the same kind (a timeout stays a timeout: the system may have it)
            raise type(exc)(f"{self.target} endpoint {exc.detail}", reason=exc.reason) from exc
        if response.status_code in RETRYABLE_STATUS:
            raise EndpointUnavailable(
                f"{self.target} endpoint answered {response.status_code}: {response.text[:500]}"
            )
        if response.status_code >= 400:
            raise DeliveryRejected(
                f"{self.target} endpoint rejected the order with {response.status_code}: "
                f"{response.text[:1000]}",
                status_code=response.status_code,
                response_body=response.text[:4000],
            )
        return response.status_code

    def _send_adapted(self, body: bytes, headers: dict[str, str]) -> int:
        adapter = self.adapter
        assert adapter is not None
        document = headers.get("X-Orderbus-Document")
        if document and document not in getattr(adapter, "documents", frozenset()):
            raise DocumentNotSupported(
                f"{self.target}: the {adapter.name} adapter cannot make a {document} yet "
                f"(order {headers.get('X-Orderbus-Order-Number', '')}, after-sale "
                f"{headers.get('X-Orderbus-After-Sale', '')}): make it in {adapter.name} by "
                "hand, then discard this dead letter"
            )
        try:
            order = json.loads(body)
        except ValueError as exc:
            raise DeliveryRejected(
                f"{self.target}: not JSON: {exc}", status_code=0, response_body=""
            ) from exc
        try:
            if document:
                made: int = adapter.deliver_document(  # type: ignore[attr-defined]
                    order,
                    document,
                    headers.get("X-Orderbus-After-Sale", ""),
                    headers.get("Idempotency-Key", ""),
                    self.transport,
                )
                return made
            return adapter.deliver(order, headers.get("Idempotency-Key", ""), self.transport)
        except (DeliveryRejected, EndpointUnavailable):
            raise
        except (ValueError, KeyError, TypeError) as exc:  # the mapping cannot be applied
            raise DeliveryRejected(
                f"{self.target}: the order cannot be put into {adapter.name}: {exc}",
                status_code=0,
                response_body="",
            ) from exc

    def send(self, body: bytes, headers: dict[str, str]) -> Sent:
        """Deliver; DeliveryRejected on a 4xx, GaveUp once transient retries run out.

        ``X-Orderbus-Attempt`` (when the caller sets it: the number of this
        message's first try here) grows by one with each retry of the send."""
        first_attempt = int(headers.get(ATTEMPT_HEADER) or 1)

        def tried(number: int) -> dict[str, str]:
            if ATTEMPT_HEADER not in headers:
                return headers
            return {**headers, ATTEMPT_HEADER: str(first_attempt + number - 1)}

        try:
            # The first attempt directly: tenacity's machinery costs about as
            # much CPU as a local request, and most requests succeed at once.
            return Sent(self._send_once(body, tried(1)), 1)
        except EndpointUnavailable as exc:
            if self.policy.attempts <= 1:
                raise GaveUp(exc, 1) from exc
            first = exc
        policy = self.policy
        log.warning("%s: attempt 1 failed (%s); retrying", self.target, first)
        time.sleep(policy.initial_wait + random.uniform(0, policy.initial_wait))  # noqa: S311

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s: attempt %d failed (%s); retrying", self.target, 1 + state.attempt_number, exc
            )

        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts - 1),
            wait=wait_exponential(multiplier=2 * policy.initial_wait, max=policy.max_wait)
            + wait_random(0, policy.initial_wait),
            retry=retry_if_exception_type(EndpointUnavailable),
            before_sleep=before_sleep,
            reraise=True,
        )
        attempts = 1
        try:
            for attempt in retrying:
                with attempt:
                    attempts = 1 + attempt.retry_state.attempt_number
                    status = self._send_once(body, tried(attempts))
        except EndpointUnavailable as exc:
            raise GaveUp(exc, attempts) from exc
        return Sent(status, attempts)
