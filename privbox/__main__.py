"""``python -m privbox`` (and ``python -m paddle.distributed.launch ... privbox/__main__.py``): the CLI."""

import sys

from privbox.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
