"""``python -m actors``: the ``castflow`` command line (see :mod:`actors.cli`)."""

import sys

from actors.cli import main

if __name__ == "__main__":
    sys.exit(main())
