import sys

from mmfer.cli.main import main

sys.exit(main())
