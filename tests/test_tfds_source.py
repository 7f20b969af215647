"""Every tfds: loader fails fast, with one line, when offline and the data is not prepared."""

import time

import pytest

from jaxml.data import imdb, mnist, tfds_source
from jaxml.errors import UserError


@pytest.mark.parametrize("load, name", [(mnist.load_mnist, "tfds:mnist"),
                                        (imdb.load_reviews, "tfds:imdb_reviews")])
def test_offline_fails_fast(monkeypatch, tmp_path, load, name):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  monkeypatch.setattr(tfds_source, "_online", lambda *a, **k: False)
  t = time.perf_counter()
  with pytest.raises(UserError, match="not available offline"):
    load(name)
  assert time.perf_counter() - t < 30
