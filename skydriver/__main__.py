"""`python -m skydriver` / `skydriver-server`: run the skydriver service until SIGTERM or SIGINT.

Exit code 2 for a configuration error (a missing WMS token file too: it is read at start, not later).
Scanners it started keep running when it stops; a restarted skydriver finds them again.
"""

from ewms_rest.service import run_service

from .config import Config
from .server import SkyDriver


def load_config() -> Config:
    config = Config.from_env()
    config.wms_bearer_token()  # raises ConfigError for an unreadable token file
    return config


def main() -> None:
    run_service("skydriver-server", load_config, SkyDriver, lambda config: (config.log_level, config.log_format))


if __name__ == "__main__":
    main()
