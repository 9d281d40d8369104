"""Reading a request's body no larger than a limit: a declared length over
it is refused before anything is read, and reading stops as soon as the
body goes over it, so a large body is never held whole.

A body that does not come whole (shorter than its ``Content-Length``, or
trickling in) is given ``timeout`` seconds in all; then, or when the client
goes away mid-body, :class:`BodyIncomplete` says how much came, and the
caller answers 400 at once and records it, instead of waiting on the socket
and logging the server's ``ClientDisconnect`` traceback."""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request


class BodyIncomplete(Exception):
    """The body did not come whole; ``body`` is what did."""

    def __init__(self, detail: str, body: bytes) -> None:
        super().__init__(detail)
        self.detail = detail
        self.body = body


async def read_limited(
    request: Request, limit: int, timeout: float | None = None
) -> tuple[bytes, int, bool]:
    """The body (up to the limit), its size as far as known, and whether it
    went over ``limit``; BodyIncomplete when it did not come whole within
    ``timeout`` seconds, or the client went away."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return b"", int(declared), True
    chunks: list[bytes] = []
    size = 0

    def came() -> str:
        expected = f" of the {declared} bytes its Content-Length announced" if declared else ""
        return f"{size} bytes{expected}"

    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return b"".join(chunks), size, True
                chunks.append(chunk)
    except TimeoutError:
        raise BodyIncomplete(
            f"the body did not come whole: {came()} in {timeout:g} s", b"".join(chunks)
        ) from None
    except ClientDisconnect:
        raise BodyIncomplete(
            f"the client went away in the middle of the body: {came()}", b"".join(chunks)
        ) from None
    return b"".join(chunks), size, False
