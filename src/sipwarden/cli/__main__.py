"""``python -m sipwarden.cli``: the ``sipwarden`` command."""

from . import main

if __name__ == "__main__":  # pragma: no cover
    main()
