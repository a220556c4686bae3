"""The pure model: the event schema and limits, the strict JSON codec of payload and state
text, event-log layouts, state actions and view definitions. No I/O here, and nothing of
eventlake but `errors` is imported.

Submodules are imported by name (`eventlake.model.<module>`): this file stays empty so that
loading one does not load its heavy siblings.
"""
