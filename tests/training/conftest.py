"""Make `train_helpers` (shared by these tests and run as a script by some) importable."""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).parent))
