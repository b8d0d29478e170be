"""Retraining winners at scale on Ray Train, and the report of speedup factors and power laws."""
