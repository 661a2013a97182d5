"""``python -m hybrec.production_local``: see :mod:`hybrec.production_local.runner`."""

import sys

from hybrec.production_local.runner import main

sys.exit(main())
