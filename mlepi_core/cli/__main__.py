"""`python -m mlepi_core.cli ...` = `mlepi ...`."""

import sys

from . import main

sys.exit(main())
