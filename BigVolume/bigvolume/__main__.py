"""`python -m bigvolume` is the `bigvolume` command."""

import sys

from .tools.cli import main

sys.exit(main())
