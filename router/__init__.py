"""The orderbus daemon: router, outbox relay, consumers, dead letters, CLI."""
