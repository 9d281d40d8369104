"""``python -m orderbus``: the same as the ``orderbus`` command."""

from orderbus.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
