import sys

from buildtools.cli.main import main

sys.exit(main())
