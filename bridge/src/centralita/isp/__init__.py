"""The ISP's side: its customers and its MikroTik routers.

Modules:
    customers  The one customer model: router comments, phones, DNI, debtor; the customer directory CSV.
    routeros   The RouterOS API client (librouteros) and the pool of routers the tools use.
"""
