"""The package version, apart from `eventlake/__init__.py` so that every layer can name it
(the Delta commits record it) without importing the facade's namespace."""

__version__ = "0.1.0"
