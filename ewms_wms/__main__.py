"""`python -m ewms_wms` / `ewms-wms`: run the WMS until SIGTERM or SIGINT (exit 2 for a configuration error)."""

from ewms_rest.service import run_service

from .config import Config
from .server import WMS


def main() -> None:
    run_service("ewms-wms", Config.from_env, WMS, lambda config: (config.log_level, config.log_format))


if __name__ == "__main__":
    main()
