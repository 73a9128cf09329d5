"""``python -m mmfer`` and the ``mmfer`` console script: the command line with every command wired in.

The command line (:mod:`mmfer.cli`) and the Gradio demo (:mod:`mmfer.demo`) are independent
interfaces; this entry point (which may import any layer) is where ``mmfer demo`` joins them.
"""

from __future__ import annotations

import argparse
import sys

from mmfer.cli.main import EXIT_OK, pipeline_from_args
from mmfer.cli.main import main as cli_main


def cmd_demo(args: argparse.Namespace) -> int:
    from mmfer.demo.app import launch  # gradio: only for this command

    launch(pipeline_from_args(args, max_video_s=args.max_video_s), host=args.host, port=args.port,
           max_upload_mb=args.max_upload_mb)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli_main(argv, commands={"demo": cmd_demo})


if __name__ == "__main__":
    sys.exit(main())
