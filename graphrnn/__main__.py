"""``python -m graphrnn``: the command line (see graphrnn.cli)."""

import sys

from graphrnn.cli import main

sys.exit(main())
