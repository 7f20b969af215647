"""The two ways a run ends early on purpose.

A `UserError` is the user's mistake (bad flag, missing or corrupt file, NaN data): the runner
prints one line `error: ...` and exits with status 2. A `DivergenceError` is a training run whose
loss or gradient went non-finite: one line, exit status 3, and the last good checkpoint stays.
Anything else is a bug in jaxml and is allowed to raise with a traceback.
"""


class UserError(Exception):
  """A problem the user can fix; the message names the problem and the fix (exit status 2)."""

  exit_status = 2


class DivergenceError(Exception):
  """Training produced a non-finite loss or gradient (exit status 3)."""

  exit_status = 3
