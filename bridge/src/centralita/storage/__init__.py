"""What the box remembers, in SQLite.

Modules:
    sqlite   One way to open a database shared by threads: WAL, busy timeout, migrations.
    records  Call records, transcripts, tool calls, tickets and the audit log of router writes.
"""
