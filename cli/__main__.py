"""`python -m compbench.cli`: the same as the `compbench` command."""

import sys

from compbench.cli.main import main

sys.exit(main())
