"""Runner-side reliability tests (faults, crashes, load, secrets, sandbox)."""
