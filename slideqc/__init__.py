"""The QC library: settings, algorithms, tiled measurement, QC steps, run output, runners' shared parts.

Its layers and what each may import: docs/architecture.md.
"""
