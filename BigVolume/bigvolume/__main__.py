"""`python -m bigvolume` is the `bigvolume` command."""

import sys

from .cli import main

sys.exit(main())
