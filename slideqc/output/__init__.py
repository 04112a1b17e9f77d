"""Run output, the one results format of every script: the run folder, results.tsv, pictures, report.html.

files.py (atomic writes, the run folder) -> results.py (rows, results.tsv) ->
pictures.py (a slide's PNGs), report.py (report.html) -> run.py (a run being written).
"""
