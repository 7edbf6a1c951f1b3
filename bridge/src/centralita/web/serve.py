"""``centralita-web``: the console's process, the Flask application served over HTTP on loopback or over HTTPS.

It reads its settings from its environment (``WebSettings``), opens its database, and serves until systemd
stops it. On a loopback address without a certificate, waitress serves plain HTTP (reach it through an SSH
tunnel). With WEB_TLS_CERT and WEB_TLS_KEY (required off loopback), cheroot serves HTTPS, TLS 1.2 or newer, with
a context loaded before the first request: a certificate or key that cannot be read, or that do not match,
stops the start with exit code 2 and the reason. Both servers run a fixed number of threads, so a burst of
requests waits instead of piling up.
"""

from __future__ import annotations

import logging
import os
import ssl
import sys
from typing import TYPE_CHECKING

from flask import Flask

from centralita.config.env import ConfigError
from centralita.web.app import create_app
from centralita.web.settings import WebSettings
from centralita.web.store import WebStore, WebStoreError
from centralita.web.tls import TlsError, tls_context

if TYPE_CHECKING:
    from cheroot.wsgi import Server

__all__ = ["https_server", "main"]

log = logging.getLogger("centralita.web")


def https_server(app: Flask, settings: WebSettings, context: ssl.SSLContext) -> Server:
    """A cheroot server for ``app`` on WEB_LISTEN:WEB_PORT with ``context`` (``start()`` serves until ``stop()``)."""
    from cheroot.ssl.builtin import BuiltinSSLAdapter
    from cheroot.wsgi import Server

    assert settings.tls_cert is not None
    assert settings.tls_key is not None
    server = Server(
        (settings.listen, settings.port),
        app,
        numthreads=settings.threads,
        server_name="centralita-web",
    )
    adapter = BuiltinSSLAdapter(str(settings.tls_cert), str(settings.tls_key))
    adapter.context = context  # ours: TLS 1.2 at least, loaded (and checked) before the server starts
    server.ssl_adapter = adapter
    return server


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = WebSettings.from_values(os.environ)
        context = tls_context(settings) if settings.tls else None
    except (ConfigError, TlsError) as error:
        print(error, file=sys.stderr)
        return 2
    try:
        store = WebStore(settings.web_db_path)
    except WebStoreError as error:
        print(error, file=sys.stderr)
        return 2
    with store:
        app = create_app(settings, store)
        scheme = "https" if context is not None else "http"
        log.info(
            "console listening on %s://%s:%d/ (%d users)", scheme, settings.listen, settings.port, len(store.users())
        )
        if context is not None:
            server = https_server(app, settings, context)
            try:
                server.start()
            finally:
                server.stop()
        else:
            from waitress import serve

            serve(app, host=settings.listen, port=settings.port, threads=settings.threads, ident="centralita-web")
    return 0


if __name__ == "__main__":
    sys.exit(main())
