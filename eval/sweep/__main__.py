"""``python -m eval.sweep``: see eval/sweep/__init__.py."""

import sys

from eval.sweep.cli import main

sys.exit(main())
