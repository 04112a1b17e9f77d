"""The workshop's solutions: scripts to run, and importable (the extra lessons build on them)."""
