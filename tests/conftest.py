"""Test session setup: float64 available for gradient checks (enabled once, before any test)."""

import os

# LLVM at optimisation level 0 for every program the tests compile, in this process and in the
# command lines it starts (they inherit the environment). The tests compile hundreds of small
# programs and run each only a few times, so compile time dominates (BUILD_NOTES "Gotchas"
# has the measurements: the same metrics, much less compile time). It changes how XLA's fused
# loops are compiled to machine code, not the HLO they compute. Set before jax starts its
# backend, which reads XLA_FLAGS once.
_O0 = "--xla_backend_optimization_level=0"
if _O0 not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), _O0]))

import jax  # noqa: E402
import pytest

jax.config.update("jax_enable_x64", True)

# JAXML_IMPORTS=my_cells python -m pytest: modules that register cells (or other registry
# entries) are imported before collection, so the registry-parametrized tests check them too.
if os.environ.get("JAXML_IMPORTS"):
  from jaxml.config import import_modules
  import_modules(os.environ["JAXML_IMPORTS"])


def tree_allclose(a, b, **kw) -> bool:
  import numpy as np
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return (jax.tree.structure(a) == jax.tree.structure(b)
          and all(np.allclose(x, y, **kw) for x, y in zip(la, lb)))


@pytest.fixture
def allclose():
  return tree_allclose
