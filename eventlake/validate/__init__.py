"""Every check before a write: event batches (`events`), the columnar payload screen, and the
one strict JSON codec. Pure: depends on `model` only.

Submodules are imported by name (`eventlake.validate.<module>`): this file stays empty so that
loading one does not load its heavy siblings.
"""
