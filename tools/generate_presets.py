#!/usr/bin/env python3
"""Write CMakeUserPresets.json for this machine (same as `python -m buildtools presets`)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from buildtools.cli.main import main  # noqa: E402

sys.exit(main(["presets", *sys.argv[1:]]))
