"""``python -m graphrnn``: the command line (see graphrnn.cli.main)."""

import sys

from graphrnn.cli.main import main

sys.exit(main())
