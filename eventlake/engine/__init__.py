"""The refresh engine (materialize, state reads) and relayout: reads through `store`, folds
with `fold`. Typed against `store.parts.LakeParts`, never the `Lake` facade.

Submodules are imported by name (`eventlake.engine.<module>`): this file stays empty so that
loading one does not load its heavy siblings.
"""
