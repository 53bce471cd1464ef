"""compbench tests."""
