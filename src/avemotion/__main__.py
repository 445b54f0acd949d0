"""``python -m avemotion predict ...``: the same as the ``avemotion`` console script."""

import sys

from avemotion.cli import main

sys.exit(main())
