"""Evaluation: the lm-eval model `compressed`, task running, batch sizing, shared-context
scoring, the tokenization cache and classifier scoring: an artifact in, a `RunRecord` out."""
