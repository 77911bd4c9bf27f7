"""kernloop's benchmarks: the edit -> build -> test loop measured against the alternatives.

``python bench/run.py`` runs every figure on temporary copies of the tracked tree and prints, per
figure, the median of N runs, min-max, the ratios and the targets, with the machine stated. See
docs/benchmarks.md. Benchmarks are not tests: nothing here asserts a time.
"""
