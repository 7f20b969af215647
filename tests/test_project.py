"""Project hygiene: CI runs exactly README's test command; every experiment is documented."""

import re
from pathlib import Path

from experiments.registry import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]


def readme_test_command() -> str:
  text = (ROOT / "README.md").read_text()
  m = re.search(r"# run the tests\n(.+)\n", text)
  assert m, "README's quick start needs a '# run the tests' line followed by the command"
  return m.group(1).strip()


def test_ci_runs_readmes_test_command():
  ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
              if ln.strip() and not ln.strip().startswith("#")]
  assert ci_lines[-1] == readme_test_command()


def test_every_experiment_is_in_the_readme():
  text = (ROOT / "README.md").read_text()
  for name in EXPERIMENTS:
    assert f"`{name}`" in text, name


def test_every_preset_validates():
  for exp in EXPERIMENTS.values():
    for cfg in exp.presets.values():
      exp.validate(cfg)
      exp.validate(exp.tiny(cfg))
