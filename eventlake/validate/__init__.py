"""Every check before a write: event batches (`events`) and the columnar payload screen, both
deciding with the model's one strict JSON codec (`eventlake.model.jsoncodec`; `jsoncodec` here
is its former name). Pure: depends on `model` only.

Submodules are imported by name (`eventlake.validate.<module>`): this file stays empty so that
loading one does not load its heavy siblings.
"""
