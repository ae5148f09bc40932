"""Benchmarks: the systems (:mod:`.systems`), the lineup by short name, the runner that writes runs and leaderboards."""
