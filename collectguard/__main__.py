import sys

from collectguard.cli import main

sys.exit(main())
