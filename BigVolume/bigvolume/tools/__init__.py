"""Tools built on the core: the `bigvolume` command line, conversion (one input or a batch, in this
process or a child process), the demo and the built-in synthetic sample, progress lines and output names."""
