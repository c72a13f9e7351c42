"""`python -m skydriver.cli`: the same as the `skydriver` console script."""

import sys

from . import main

sys.exit(main())
