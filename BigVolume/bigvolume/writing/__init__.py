"""Writing: making multiscale OME-Zarr pyramids with bounded memory.

`pyramid` is the one entry point; it runs the streaming cascade (`cascade`)
of anti-aliased or mode downsampling (`downsample`) over z-blocks, writes
whole shards straight to files (`shardio`), records finished blocks in a
journal so an interrupted write resumes (`write_journal`), and runs blocks in
this process, a process pool or on Dask (`execution`).
"""
