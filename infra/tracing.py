"""Traces, when OpenTelemetry is installed (``pip install 'orderbus[tracing]'``):
one trace from the webhook through the router to each consumer's delivery,
the context carried in each message's ``traceparent`` header (W3C).

orderbus uses only the OpenTelemetry API: spans go wherever the process's
tracer provider sends them, which the integrator configures (for example
``opentelemetry-instrument`` with ``OTEL_EXPORTER_OTLP_ENDPOINT``, or the SDK
in code). Without the package, or without a provider, every function here
does nothing and costs next to nothing: with the package but no provider
(``ProxyTracerProvider``, OpenTelemetry's stand-in until one is set) no span
is made at all, and a message's traceparent is passed on as it came.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - the optional extra is not installed
    trace = None  # type: ignore[assignment]

TRACER_NAME = "orderbus"


def _traced() -> bool:
    """A tracer provider is set: spans are made (the stand-in's cost a
    span, a parent's traceparent parsed and a context attached, was 9% of a
    consumer's CPU a delivery under the profiler, for nothing). Asked of
    OpenTelemetry at most once a second (each time it reads the environment)."""
    if trace is None:
        return False
    now = time.monotonic()
    if now < _CHECKED.until:
        return _CHECKED.traced
    provider = trace.get_tracer_provider()
    _CHECKED.traced = not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    _CHECKED.until = now + 1.0
    return _CHECKED.traced


@dataclass
class _Checked:
    traced: bool = False
    until: float = 0.0  # monotonic time of the next check


_CHECKED = _Checked()


def current_traceparent() -> str | None:
    """The current span as a W3C traceparent, when one is being recorded."""
    if not _traced():
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def open_span(name: str, parent: str | None = None, **attributes: Any) -> Any:
    """A started span, child of the ``parent`` traceparent (a message's) or of
    the current span; not made current. None when not traced."""
    if not _traced():
        return None
    ctx = TraceContextTextMapPropagator().extract({"traceparent": parent}) if parent else None
    attrs = {k: v for k, v in attributes.items() if v is not None}
    return trace.get_tracer(TRACER_NAME).start_span(name, context=ctx, attributes=attrs)


def traceparent_of(opened: Any) -> str | None:
    """``opened``'s traceparent, to carry on the messages it makes."""
    if trace is None or opened is None or not opened.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(opened))
    return carrier.get("traceparent")


def close_span(opened: Any, error: BaseException | None = None) -> None:
    if opened is None:
        return
    if error is not None:
        opened.record_exception(error)
        opened.set_status(trace.Status(trace.StatusCode.ERROR, str(error)[:200]))
    opened.end()


def mark_failed(error: BaseException) -> None:
    """The current span's work failed without raising (a delivery the system
    refused, a system down): the span says so."""
    if trace is None:
        return
    current = trace.get_current_span()
    if current.get_span_context().is_valid:
        current.record_exception(error)
        current.set_status(trace.Status(trace.StatusCode.ERROR, str(error)[:200]))


@contextmanager
def span(name: str, parent: str | None = None, **attributes: Any) -> Iterator[str | None]:
    """A span around a block, current within it; yields its traceparent
    (None when not traced)."""
    opened = open_span(name, parent, **attributes)
    if opened is None:
        yield None
        return
    token = otel_context.attach(trace.set_span_in_context(opened))
    error: BaseException | None = None
    try:
        yield traceparent_of(opened)
    except BaseException as exc:
        error = exc
        raise
    finally:
        otel_context.detach(token)
        close_span(opened, error)
