"""tensorflow-datasets splits read through `DatasetBuilder.as_data_source` (what
`tfds.data_source` does), failing fast with one line that names the cause.

What works without TensorFlow:
* reading a dataset already prepared as ArrayRecord in the tfds data directory ($TFDS_DATA_DIR,
  default ~/tensorflow_datasets), text or image alike;
* preparing (download + convert) a text dataset such as `imdb_reviews`, when online.
Preparing an image dataset (`mnist`, `fashion_mnist`, ...) needs TensorFlow: tfds encodes every
image as PNG with `tf.image`. That is checked before anything is downloaded. A copy prepared by
`tfds.load` or a default `tfds build` is TFRecord, which has no random access; tfds then asks for
`--file_format=array_record`, and so do we.

Offline, tfds would retry a download for minutes, so before preparing we probe tfds' GCS mirror
and every host the dataset's checksums list (or the configured proxy), in parallel for 3 s.
"""

import importlib.util
import queue
import socket
import threading
import time
import urllib.parse
import urllib.request

from jaxml.errors import UserError

GCS_MIRROR = "https://storage.googleapis.com/tfds-data"  # tfds tries it first for any dataset
PROBE_TIMEOUT_S = 3.0  # how long the online probe waits for any host to answer


def _online(addresses, timeout: float = PROBE_TIMEOUT_S) -> bool:
  """True if any (host, port) accepts a TCP connection within `timeout` seconds.

  Probed in parallel on daemon threads: a DNS lookup that hangs holds up neither the answer
  nor the interpreter's exit.
  """
  addresses = list(addresses)
  answers = queue.SimpleQueue()

  def probe(address):
    try:
      socket.create_connection(address, timeout=timeout).close()
      answers.put(True)
    except OSError:
      answers.put(False)

  for address in addresses:
    threading.Thread(target=probe, args=(address,), daemon=True).start()
  deadline = time.monotonic() + timeout
  for _ in addresses:
    try:
      if answers.get(timeout=max(0.0, deadline - time.monotonic())):
        return True
    except queue.Empty:
      return False
  return False


def download_addresses(urls) -> list:
  """(host, port) to probe for these URLs plus tfds' GCS mirror; a configured proxy instead."""
  proxies = urllib.request.getproxies()
  addresses = []
  for url in [GCS_MIRROR, *urls]:
    parts = urllib.parse.urlsplit(url)
    if proxies.get(parts.scheme):
      parts = urllib.parse.urlsplit(proxies[parts.scheme])
    address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    if address not in addresses:
      addresses.append(address)
  return addresses


def _dataset_urls(builder) -> list:
  """The URLs in the dataset's checksums file; [] where this tfds cannot list them.

  (tfds 4.9 reads that file through `importlib_resources`, which it only installs on
  Python < 3.9; preparing then fails the same way, and says so, once we are online.)
  """
  try:
    return list(builder.url_infos or ())
  except ModuleNotFoundError:
    return []


def _image_features(feature):
  """The tfds Image features inside `feature` (dicts and sequences walked)."""
  import tensorflow_datasets as tfds
  if isinstance(feature, tfds.features.Image):
    yield feature
  elif isinstance(feature, tfds.features.FeaturesDict):
    for sub in feature.values():
      yield from _image_features(sub)
  elif isinstance(getattr(feature, "feature", None), tfds.features.FeatureConnector):
    yield from _image_features(feature.feature)  # Sequence, Dataset


def _missing_module(e: ModuleNotFoundError, what: str, fix: str) -> UserError:
  if e.name == "tensorflow":
    return UserError(f"{what} needs TensorFlow, which is not installed (tfds encodes images "
                     f"with it): pip install tensorflow and run once online (later runs read "
                     f"the prepared copy without it), or {fix}")
  return UserError(f"{what} needs the module {e.name!r}, which tensorflow-datasets imports but "
                   f"did not install: pip install {e.name}, or {fix}")


def open_split(name: str, split: str, fix: str):
  """The `split` of tfds dataset `name`: a random-access sequence of example dicts.

  Prepared copies are read as they are; otherwise the dataset is downloaded and prepared as
  ArrayRecord when that can work (see the module docstring). `fix` ends each error message
  (what the user can pass instead).
  """
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise UserError("tfds: paths need tensorflow-datasets (pip install tensorflow-datasets), "
                    f"or {fix}") from None
  what = f"tfds:{name}"
  try:
    builder = tfds.builder(name, file_format="array_record")
  except ModuleNotFoundError as e:  # e.g. video datasets build their features with TensorFlow
    raise _missing_module(e, f"{what} (its feature spec)", fix) from None
  except ValueError as e:  # DatasetNotFoundError, an unknown config or version
    raise UserError(f"{what}: tfds knows no such dataset ({str(e).splitlines()[0][:150]}); "
                    f"{fix}") from None
  where = builder.data_dir
  try:
    source = builder.as_data_source(split=split)
  except NotImplementedError:
    raise UserError(f"{what} is prepared in {where} as {builder.info.file_format}, which tfds "
                    f"cannot read by random access: rebuild it with `tfds build {name} "
                    f"--file_format=array_record` (or delete it and rerun), or {fix}") from None
  except KeyError:  # tfds: "splits is empty ... not been generated yet", or no such split
    if builder.info.splits:
      raise UserError(f"{what} has no {split!r} split (it has "
                      f"{', '.join(builder.info.splits)}); {fix}") from None
    source = _prepare(builder, split, what, where, fix)
  if len(source) == 0:
    raise UserError(f"{what} has an empty {split} split in {where}")
  return source


def _prepare(builder, split, what, where, fix):
  """Downloads and prepares `builder` as ArrayRecord, after the checks that make it fail fast."""
  what_prep = f"{what} is not prepared in {where}, and preparing it"
  if (any(True for _ in _image_features(builder.info.features))
      and importlib.util.find_spec("tensorflow") is None):
    raise _missing_module(ModuleNotFoundError(name="tensorflow"), what_prep, fix)
  addresses = download_addresses(_dataset_urls(builder))
  if not _online(addresses):
    hosts = ", ".join(host for host, _ in addresses)
    raise UserError(f"{what} is not prepared in {where} and we are offline (none of {hosts} "
                    f"answered within {PROBE_TIMEOUT_S:g} s): run once while online to "
                    f"prepare it, or {fix}")
  try:
    builder.download_and_prepare()
  except ModuleNotFoundError as e:
    raise _missing_module(e, what_prep, fix) from None
  except OSError as e:  # requests' connection errors are OSErrors
    raise UserError(f"{what}: downloading it into {where} failed "
                    f"({type(e).__name__}: {str(e).splitlines()[0][:150]}); retry, or {fix}") \
        from None
  return builder.as_data_source(split=split)


def read_all(source) -> list:
  """Every example of `source`, read in one batch (`__getitems__`) where the source has it:
  ~3x faster than one `source[i]` at a time on ArrayRecord (25k IMDB reviews: 3.5 s vs 11.1 s)."""
  if hasattr(source, "__getitems__"):
    return list(source.__getitems__(range(len(source))))
  return [source[i] for i in range(len(source))]
