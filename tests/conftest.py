"""The test suite mirrors the code: ``tests/pipeline`` and ``tests/service`` are torch-free (they
run in the service's own environment too), ``tests/training`` needs torch."""
