"""Operations on a lake: doctor, verify, restore, maintenance.

Submodules are imported by name (`eventlake.ops.<module>`): this file stays empty so that
loading one does not load its heavy siblings.
"""
