"""The intelligence: pure, synchronous functions and small classes.

Nothing in this package touches Kafka, Redis or asyncio; every public function has a
runnable example that ``pytest --doctest-modules`` checks.
"""
