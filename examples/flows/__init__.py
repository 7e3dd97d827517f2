"""Flows of the example run-set written in Python (``callable = "flows.shop:..."``)."""
