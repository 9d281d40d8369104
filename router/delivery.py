"""Delivery of an order to an existing system over HTTP.

The request carries ``Idempotency-Key: <message id>``: orderbus delivers at
least once and the key lets the target drop a copy (e.g. after a crash between
its 200 and our inbox commit). httpx transports are the seam for tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from canonical.errors import DeliveryRejected, EndpointUnavailable, PermanentError

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


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
    def __init__(
        self,
        target: str,
        url: str,
        client: httpx.Client,
        policy: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.target = target
        self.url = url
        self.client = client
        self.policy = policy

    def _send_once(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"{self.target} endpoint {self.url}: {exc!r}") from exc
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

    def send(self, body: bytes, headers: dict[str, str]) -> Sent:
        """Deliver; DeliveryRejected on a 4xx, GaveUp once transient retries run out."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s: attempt %d failed (%s); retrying", self.target, state.attempt_number, exc
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.policy.attempts),
            wait=wait_exponential(multiplier=self.policy.initial_wait, max=self.policy.max_wait)
            + wait_random(0, self.policy.initial_wait),
            retry=retry_if_exception_type(EndpointUnavailable),
            before_sleep=before_sleep,
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    status = self._send_once(body, headers)
        except EndpointUnavailable as exc:
            raise GaveUp(exc, attempts) from exc
        return Sent(status, attempts)
