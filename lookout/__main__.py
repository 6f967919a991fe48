import sys

from lookout.cli import main

sys.exit(main())
