"""Documents in: load (sandboxed) → clean → split → embed → store, and the worker that runs upload jobs."""
