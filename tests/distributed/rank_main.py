"""Entry script of the distributed tests, started by ``paddle.distributed.launch`` on every rank.

Runs the privbox CLI with ``{rank}`` in any argument replaced by this rank's number (to give the
ranks different files on purpose), and, when ``PRIVBOX_TEST_KILL=RANK:SECONDS`` is set, kills
rank RANK with SIGKILL after SECONDS (a rank that dies mid-run).
"""

import os
import signal
import sys
import threading

rank = os.environ.get("PADDLE_TRAINER_ID", "0")
kill = os.environ.get("PRIVBOX_TEST_KILL")
if kill and kill.split(":")[0] == rank:
    threading.Timer(float(kill.split(":")[1]), lambda: os.kill(os.getpid(), signal.SIGKILL)).start()

from privbox.cli.main import main  # noqa: E402

sys.exit(main([arg.replace("{rank}", rank) for arg in sys.argv[1:]]))
