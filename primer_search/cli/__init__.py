"""The `primer-search` command line: a thin layer over the library."""
