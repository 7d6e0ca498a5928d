"""`python -m wpfarm_assets.cli`: the `wpfarm` command."""

import sys

from wpfarm_assets.cli import main

sys.exit(main())
