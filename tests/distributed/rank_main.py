"""Entry script of the distributed tests, started by ``paddle.distributed.launch`` on every rank.

Runs the privbox CLI with ``{rank}`` in any argument replaced by this rank's number (to give the
ranks different files on purpose). With ``PRIVBOX_TEST_KILL=RANK:SECONDS:FILE`` rank RANK kills
itself with SIGKILL SECONDS after FILE appears (a rank that dies mid-run), writing the time of
death to FILE.killed.
"""

import os
import signal
import sys
import threading
import time

rank = os.environ.get("PADDLE_TRAINER_ID", "0")
kill = os.environ.get("PRIVBOX_TEST_KILL")
if kill and kill.split(":")[0] == rank:
    _, seconds, marker = kill.split(":", 2)

    def _die() -> None:
        while not os.path.exists(marker):
            time.sleep(0.2)
        time.sleep(float(seconds))
        with open(marker + ".killed", "w") as fh:
            fh.write(repr(time.time()))
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=_die, daemon=True).start()

from privbox.cli.main import main  # noqa: E402

sys.exit(main([arg.replace("{rank}", rank) for arg in sys.argv[1:]]))
