"""Reading a request's body no larger than a limit: a declared length over
it is refused before anything is read, and reading stops as soon as the
body goes over it, so a large body is never held whole."""

from __future__ import annotations

from starlette.requests import Request


async def read_limited(request: Request, limit: int) -> tuple[bytes, int, bool]:
    """The body (up to the limit), its size as far as known, and whether it
    went over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return b"", int(declared), True
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), size, True
        chunks.append(chunk)
    return b"".join(chunks), size, False
