"""Results records: the run record schema, the results index (reading and writing results
folders, lm-eval's files too), and the migration of old files."""
