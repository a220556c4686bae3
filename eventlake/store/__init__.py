"""The only code that talks to Delta tables and object storage: `Storage`/`Snapshot`, the Delta
log reader and writer, data files, the event log and the view tables.

Submodules are imported by name (`eventlake.store.<module>`): this file stays empty so
loading one does not load its heavy siblings.
"""
