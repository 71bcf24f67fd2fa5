"""`python -m reference_lgc`: serve the reference LGC (uvicorn, one process; calls run on its worker pool)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .config import ConfigError, LgcConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_lgc",
                                     description="Serve the segur-bench reference LGC (French UI).")
    parser.add_argument("--config", type=Path, help="TOML settings file (service URLs, timeouts, PSC client)")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8000)")
    parser.add_argument("--data-dir", type=Path, help="where the SQLite base lives (default .segur-bench/lgc)")
    parser.add_argument("--public-url", help="URL browsers use to reach the LGC (PSC redirect URI)")
    parser.add_argument("--no-demo-data", action="store_true", help="start with an empty base")
    args = parser.parse_args(argv)
    try:
        config = LgcConfig.load(args.config, host=args.host, port=args.port, data_dir=args.data_dir,
                                public_url=args.public_url, demo_data=False if args.no_demo_data else None)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .server import serve

    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
