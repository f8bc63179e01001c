"""Data synthesis: captions -> descriptions (LLM) -> images -> QA (LLM or exact) -> filtered LLaVA data."""
