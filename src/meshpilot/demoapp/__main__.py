"""``python -m meshpilot.demoapp``."""

import sys

from meshpilot.demoapp.app import main

sys.exit(main())
