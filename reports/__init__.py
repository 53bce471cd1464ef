"""Reports from results records: comparison tables with the Score, plots, and the CI gate."""
