"""Ranked chunks to a checked answer: packing, prompts, generation, citations, the evidence checks and calibration."""
