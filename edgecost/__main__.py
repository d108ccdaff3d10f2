"""`python -m edgecost` is the `edgecost` command."""

import sys

from .cli import main

sys.exit(main())
