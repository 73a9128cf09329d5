"""Run the mmfer demo from a checkout: ``python demo/app.py [--port 7860] [...]`` (same options as ``mmfer demo``)."""

import sys

from mmfer.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
