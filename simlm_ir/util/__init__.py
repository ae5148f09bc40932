"""Plumbing every stage uses: atomic writes (:mod:`.io`), progress bars, the device resolver."""
