"""The outbound dialer: calls customers with overdue bills within the calling rules, one attempt at a time.

Modules (one job each):
    outcomes        What an attempt can end in, and which outcomes end the calling of a customer.
    policy          Pure rules: calling windows per time zone, holidays, caps, retry interval, cooldown.
    importer        Customers from a CSV file or from the routers' debtors address-list.
    store           ``CampaignStore``: campaigns, targets, attempts (leased), outcomes and opt-outs in SQLite.
    originator      The ``Originator`` protocol: the runner's boundary to the phone system.
    runner          ``Runner``: the scheduler loop (leases, concurrency cap, calls per minute, recovery).
    ari_originator  ``AriOriginator``: places calls with ARI ``POST /channels`` and follows them by events.
    service         ``openai-outbound-calls``: runs the runner until SIGTERM.
    cli             ``centralita campaign ...``: import, start, pause, status, report, opt-out.

The DIALER_* settings are read by ``centralita.config.dialer``; the assistant's tools for outbound calls
(``registrar_resultado``, ``no_volver_a_llamar``) live in ``centralita.tools.collections``.

docs/DIALER.md explains the campaign workflow, the CSV format and the calling rules.
"""
