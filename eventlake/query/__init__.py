"""SQL over a lake with DuckDB (`eventlake.query.sql`): `Lake.sql`, connections with every
table defined, and the init file for the DuckDB shell.

Submodules are imported by name: this file stays empty so that loading the package loads
nothing heavy.
"""
