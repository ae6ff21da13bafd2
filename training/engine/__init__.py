"""The training engine every trainer shares: one resumable loop, checkpoints, stop signals,
distributed data parallelism, weight EMA, optimiser and schedule, command-line options."""
