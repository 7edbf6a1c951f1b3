"""What the box remembers, in SQLite.

Modules:
    sqlite   One way to open a database shared by threads: WAL, busy timeout, migrations.
    records  Call records, transcripts, tool calls, usage, tickets and the audit log of router writes.
    writer   One writer thread per database, with a bounded queue: writes that wait, retry, or are counted lost.
    queued   A call's writes, only queued on the writer: SQLite never stops or silences a call.
"""
