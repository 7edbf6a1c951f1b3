"""The ISP's side: its customers, their phone numbers and its MikroTik routers.

Modules:
    customers  The one customer model: router comments, phones, DNI, disabled and debtor rules; the directory CSV.
    phones     Phone numbers read with libphonenumber, kept and compared as E.164; the zones a number may be in.
    routeros   The RouterOS API client (librouteros) and the pool of routers the tools use.
"""
