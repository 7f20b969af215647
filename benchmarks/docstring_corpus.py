"""A plain-text English corpus unrelated to the Bible, for testing `ngram_lm` on data it was not
tuned on: every docstring of the Python standard library installed on this machine.

    python benchmarks/docstring_corpus.py /tmp/stdlib_docstrings.txt
    python benchmarks/docstring_corpus.py /tmp/np_docstrings.txt SITE/numpy SITE/scipy  # others
    python benchmarks/trigram_baseline.py --data_path=/tmp/stdlib_docstrings.txt \
        --write_h5=/tmp/stdlib_data2.h5        # the same 4-grams in the seed's data2.h5 layout

Docstrings are read with `ast` (nothing is imported or run); the test suite (`test/`,
`idlelib/idle_test/`) is skipped, and so are lines that are code rather than prose: doctest
lines (`>>>`, `...`), indented example blocks, and rules such as numpydoc's `-------` under a
section name (one token per character, they would swamp the 4-gram counts).
"""

import ast
import sys
import sysconfig
from pathlib import Path


def docstrings(root: Path):
  for path in sorted(root.rglob("*.py")):
    rel = path.relative_to(root).parts
    if rel[0] in ("test", "site-packages", "dist-packages") or "idle_test" in rel or "tests" in rel:
      continue
    try:
      tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
      continue
    for node in ast.walk(tree):
      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        doc = ast.get_docstring(node, clean=True)
        if doc:
          yield doc


def prose(doc: str) -> str:
  keep = [ln for ln in doc.splitlines()
          if any(c.isalnum() for c in ln) and not ln.startswith((" ", "\t", ">>>", "..."))]
  return " ".join(keep)


def main() -> None:
  out = Path(sys.argv[1] if len(sys.argv) > 1 else "stdlib_docstrings.txt")
  roots = [Path(r) for r in sys.argv[2:]] or [Path(sysconfig.get_paths()["stdlib"])]
  text = "\n".join(p for root in roots for p in map(prose, docstrings(root)) if p)
  out.write_text(text)
  print(f"{out}: {len(text.split())} words from docstrings under {', '.join(map(str, roots))}")


if __name__ == "__main__":
  main()
