"""``python -m rgbpose ...``: the same as the ``rgbpose`` command."""

import sys

from rgbpose.cli import main

if __name__ == "__main__":
    sys.exit(main())
