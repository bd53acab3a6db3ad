"""``python -m fastsmtp``: the same as the ``fastsmtp`` command."""

import sys

from fastsmtp.cli import main

sys.exit(main())
