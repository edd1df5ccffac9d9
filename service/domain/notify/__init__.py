"""Telling clients what happened: the events log (SSE) and signed webhooks."""
