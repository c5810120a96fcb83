import sys

from balise.cli import main

sys.exit(main())
