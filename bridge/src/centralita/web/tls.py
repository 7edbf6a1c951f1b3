"""The console's TLS context, from WEB_TLS_CERT and WEB_TLS_KEY: loaded and checked before anything is served.

``centralita-web`` loads it at start (a file that cannot be read, or a key that does not match its certificate,
stops the start with the reason); the role runs ``centralita web check-tls`` on the files it writes, so a bad
pair fails the play with that reason instead of a console that never answers.
"""

from __future__ import annotations

import ssl

from centralita.web.settings import WebSettings

__all__ = ["TlsError", "tls_context"]


class TlsError(ValueError):
    """The certificate or key cannot serve HTTPS; the message names the files and the fix."""


def tls_context(settings: WebSettings) -> ssl.SSLContext:
    """The server's TLS context from WEB_TLS_CERT and WEB_TLS_KEY: TLS 1.2 at least, Python's default ciphers."""
    if settings.tls_cert is None or settings.tls_key is None:
        raise TlsError("WEB_TLS_CERT and WEB_TLS_KEY are not set: there is no certificate to serve HTTPS with.")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except ssl.SSLError as error:
        raise TlsError(
            f"the console's certificate {settings.tls_cert} and key {settings.tls_key} cannot serve HTTPS "
            f"({error.reason or error}): give a PEM certificate (its chain after it) and the unencrypted PEM private "
            "key that belongs to it (bridge_web_tls_certificate, bridge_web_tls_key)."
        ) from None
    except OSError as error:
        raise TlsError(
            f"the console's certificate {settings.tls_cert} or key {settings.tls_key} cannot be read "
            f"({error.strerror or error}): they must be PEM files readable by the console's user (the role writes "
            "them from bridge_web_tls_certificate and bridge_web_tls_key, 0640 root:centralita-web)."
        ) from None
    return context
