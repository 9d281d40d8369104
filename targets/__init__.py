"""Delivery targets: the consumers that deliver routed orders to the existing
systems (HTTP delivery, ERP adapters, customer notifications, write-back to
the channels), each with its inbox, retries and dead letters."""
