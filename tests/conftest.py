"""Test session setup: float64 available for gradient checks (enabled once, before any test)."""

import os

import jax
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
