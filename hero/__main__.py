import sys

from hero.cli import main

sys.exit(main())
