"""`python -m bastion` runs the command line."""

import sys

from bastion.cli import main

sys.exit(main())
