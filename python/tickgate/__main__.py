import sys

from tickgate.cli import main

sys.exit(main())
