"""``python -m salesinbox.schema.command_line``: the same as the ``salesinbox`` console script."""

import sys

from .commands import main

sys.exit(main())
