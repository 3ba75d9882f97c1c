"""The command line: thin shells over the profiler, the session loader and the renderers."""
