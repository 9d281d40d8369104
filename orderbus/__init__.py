"""The program: the composition root (bootstrap), the runner, the CLI and the
demo. Nothing imports this package; it imports every layer below it."""
