"""`python -m device_check` (with src and tools on PYTHONPATH, as scripts/device-check.sh sets)."""

import sys

from device_check.check import main

sys.exit(main())
