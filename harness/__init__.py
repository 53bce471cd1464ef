"""The lm-eval model wrapper, the runner, measurement and the `compbench` CLI."""
