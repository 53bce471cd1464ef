"""Results store, comparison tables, and (later) plots and the CI regression gate."""
