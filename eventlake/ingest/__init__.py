"""Inbox files: readers for JSON Lines, CSV and Parquet, and landing each file as one batch.

Submodules are imported by name (`eventlake.ingest.<module>`): this file stays empty so that
loading one does not load its heavy siblings.
"""
