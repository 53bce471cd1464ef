"""compbench: a benchmark harness for compressed language models, built on lm-eval."""

__version__ = "0.1.0"
