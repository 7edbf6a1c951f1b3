"""``centralita-web``: the console's process, the Flask application served by waitress.

It reads its settings from its environment (``WebSettings``), opens its database, and serves until systemd
stops it. waitress serves a fixed number of threads, so a burst of requests waits instead of piling up.
"""

from __future__ import annotations

import logging
import os
import sys

from centralita.config.env import ConfigError
from centralita.web.app import create_app
from centralita.web.settings import WebSettings
from centralita.web.store import WebStore, WebStoreError

__all__ = ["main"]

log = logging.getLogger("centralita.web")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = WebSettings.from_values(os.environ)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        store = WebStore(settings.web_db_path)
    except WebStoreError as error:
        print(error, file=sys.stderr)
        return 2
    from waitress import serve

    with store:
        app = create_app(settings, store)
        log.info("console listening on http://%s:%d/ (%d users)", settings.listen, settings.port, len(store.users()))
        serve(app, host=settings.listen, port=settings.port, threads=settings.threads, ident="centralita-web")
    return 0


if __name__ == "__main__":
    sys.exit(main())
