"""Runs: the plan (models x recipes x settings, keyed once), the runner that executes it
through an executor (local processes or Ray), sweep files, and the trained presets it builds."""
