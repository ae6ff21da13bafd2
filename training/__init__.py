"""Training, evaluation, profiling and export (needs torch)."""
