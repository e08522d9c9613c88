"""`python -m greenops_exporter` runs the same CLI as the console script."""

import sys

from greenops_exporter.cli import main

sys.exit(main())
