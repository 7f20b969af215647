"""README's result tables against the recorded runs they cite, so the two cannot drift.

A README table row whose `source` cell links a JSON file (`[text](PATH)` or `PATH#KEY` for one
entry of it) is checked cell by cell: every cell that is a number must sit under a column this
file knows (COLUMNS, or a classifier / (D, P) name of that run's metrics) and equal the recorded
value rounded to the cell's own number of decimals. Reading only, no training.
"""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# column header -> dotted path in the cited JSON
COLUMNS = {
    "test accuracy": "metrics.test_accuracy",
    "std": "metrics_summary.test_accuracy.std",
    "face recall": "metrics.test_face_recall",
    "s per epoch": "timing.seconds_per_epoch",
    "run s": "timing.total_s",
    "J": "metrics.J",
    "mean activation": "metrics.mean_activation",
    "MSE ratio": "metrics.reconstruction_mse_ratio",
    "jaxml ms": "jaxml.ms",
    "PyTorch ms": "torch.ms",
    "torch/jaxml": "torch_over_jaxml",
}
NUMBER = re.compile(r"-?\d+(\.\d+)?")


def cells(line: str) -> list[str]:
  return [c.strip() for c in line.strip().strip("|").split("|")]


def table_rows():
  """(line number, header cells, row cells) for every README table body row."""
  lines = (ROOT / "README.md").read_text().splitlines()
  header = None
  for i, line in enumerate(lines, 1):
    if not line.startswith("|"):
      header = None
      continue
    row = cells(line)
    if header is None:
      header = [h.strip("`") for h in row]
      continue
    if not set("".join(row)) <= set("-:"):
      yield i, header, row


def sourced_rows():
  """(line number, {header: cell}, source path) for every README table row with a source."""
  for i, header, row in table_rows():
    named = dict(zip(header, row))
    link = re.fullmatch(r"\[[^\]]*\]\(([^)]+)\)", named.get("source", ""))
    if link:
      yield i, named, link.group(1)


def recorded(results: dict, column: str):
  """The value the README's column shows for this run, or None for a column of words."""
  path = COLUMNS.get(column)
  if path is None:
    metrics = results.get("metrics", {})
    if column in metrics.get("classifiers", {}):
      path = f"metrics.classifiers.{column}.test_accuracy"
    elif column in metrics.get("configs", {}):
      path = f"metrics.configs.{column}.test_cross_entropy"
    else:
      return None
  value = results
  for key in path.split("."):
    value = value[key]
  return value


def test_readme_tables_equal_the_runs_they_cite():
  rows = list(sourced_rows())
  assert len(rows) >= 20, rows  # the result tables and the speed table are all found
  checked, wrong = 0, []
  for line, row, source in rows:
    file, _, key = source.partition("#")
    assert (ROOT / file).is_file(), f"README.md:{line}: source {file} does not exist"
    results = json.loads((ROOT / file).read_text())
    if key:
      results = results[key]
    for column, cell in row.items():
      if not NUMBER.fullmatch(cell):
        continue
      value = recorded(results, column)
      assert value is not None, (
          f"README.md:{line}: column {column!r} holds the number {cell} but is not a recorded "
          f"figure of {source}; name it in tests/test_readme_numbers.py COLUMNS or drop it")
      decimals = len(cell.partition(".")[2])
      if f"{value:.{decimals}f}" != cell:
        wrong.append(f"README.md:{line} {column!r}: {cell}, but {source} records {value!r}")
      checked += 1
  assert not wrong, "\n".join(wrong)
  assert checked >= 60, checked


def test_every_recorded_results_table_row_names_its_source():
  """A table with a `source` column leaves no row without one."""
  for i, header, row in table_rows():
    if "source" in header:
      cell = dict(zip(header, row))["source"]
      assert re.fullmatch(r"\[[^\]]*\]\([^)]+\)", cell), f"README.md:{i}: no source link"
