"""`python -m serlib.study`: run a profile's notebooks (see runner)."""

import sys

from .runner import main

sys.exit(main())
