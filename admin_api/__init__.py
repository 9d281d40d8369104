"""Admin API: inspect and retry dead letters, inspect rejected requests and the audit log."""
