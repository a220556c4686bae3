"""Folds: prior view rows + new events -> new rows (reducers event by event, aggregates
vectorized). Pure: no storage, depends on `model` only (the
strict JSON codec is the model's).

Submodules are imported by name (`eventlake.fold.<module>`): this file stays empty so that
loading one does not load its heavy siblings.
"""
