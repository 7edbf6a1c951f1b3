"""The operator's console (``centralita-web``): call history, calls in progress and campaigns in a browser.

Server-rendered Flask pages in Spanish, served by waitress. The console reads the call records read-only,
keeps its own users, sessions, login failures and audit log in its own database (``store``), and changes
campaigns only through the dialer store's own functions.
"""
