import sys

from buildtools.run.noop import fast_build

# A build with nothing to do is answered before the planner is imported (buildtools.run.noop).
code = fast_build(sys.argv[1:])
if code is None:
    from buildtools.cli.main import main

    code = main()
sys.exit(code)
