"""The router: dedup, validation rules that need state, holds for approval,
fan-out to the targets, the outbox and its relay, and shipments as revisions."""
