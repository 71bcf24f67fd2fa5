"""Child process of the outbox crash tests: runs the DMP outbox worker on an SQLite base until it is killed.

    python tests/reference_lgc/outbox_worker.py DB_PATH DMP_SERVICES_URL TIMEOUT_S
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reference_lgc.db import Database
from reference_lgc.outbox import Outbox
from reference_lgc.services.context import Endpoint, Software


def main(argv: list[str]) -> None:
    db_path, url, timeout = argv[1], argv[2], float(argv[3])
    box = Outbox(Database(Path(db_path)), endpoint=Endpoint(url, timeout=timeout), software=Software(),
                 poll_interval=0.05)
    box.start()
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv)
