"""Operator and publisher tools: publisher, dead-letter replay, backfill, topic reader,
contract generation and the model-quality report."""
