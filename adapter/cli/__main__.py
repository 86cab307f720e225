import sys

from adapter.cli.main import main

sys.exit(main())
