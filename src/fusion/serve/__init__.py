"""Serving: an OpenAI-compatible HTTP API and a web UI over a batching generation engine."""
