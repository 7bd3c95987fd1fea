"""The bottom layer: databases (catalog, jobs, sessions, feedback) and vector indexes, with their filters."""
