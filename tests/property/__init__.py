"""Property-based tests: random workflow trees under injected faults, checked against a model."""
