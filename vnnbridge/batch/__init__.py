"""Certify whole data sets: many inputs, one results table, resumable, serial or in parallel.

`sources` turns a collection (idx file, ``.npy`` stack, folder, list file) into items;
`worker` certifies one item with a warm oracle (`vnnbridge.job.run_job`); `calls` keeps the
definitive oracle answers in a content-addressed cache so that a resumed batch never asks
twice; `table` reads and writes ``results.csv``; `run` drives it all, serially, with local
worker processes or on a Dask distributed cluster.
"""

__all__: list[str] = []
