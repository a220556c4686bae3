"""The only code that talks to Delta tables and object storage: `Storage`/`Snapshot`, the Delta
log's writer (`deltalog`) and raw readers (`tablefiles`), data files, the event log and the
view tables; and `parts.LakeParts`, what the layers above use of a lake.

Submodules are imported by name (`eventlake.store.<module>`): this file stays empty so that
loading one does not load its heavy siblings.
"""
