"""The twin's tests (a package, so that modules can share helpers as ``tests.*``).

Imported before any test module or conftest: the environment set here reaches every library
the tests load and every ``twin`` process they start.
"""

import os

# Model fits on one thread (scikit-learn's OpenMP, numpy's BLAS). This machine has two cores
# shared by several test runs; threads that spin waiting for each other made the fits up to
# ten times slower (a road-wear evaluation: 195 s with the default threads, 19 s with one).
# Results do not depend on it. Set either variable to choose otherwise.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
