import sys

from fastrank.cli import main

sys.exit(main())
