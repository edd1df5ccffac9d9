"""Making audio: requests, the worker's production, variants and transfers, sampling values, failures."""
