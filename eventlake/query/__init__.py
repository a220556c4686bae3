"""SQL over a lake with DuckDB, and the init file for the DuckDB shell.

Submodules are imported by name (`eventlake.query.<module>`): this file stays empty so
loading one does not load its heavy siblings.
"""
