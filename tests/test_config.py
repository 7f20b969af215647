"""Config overrides: typed, checked, and the unknown key lists the valid ones."""

import pytest

from experiments.activity import Config, validate
from jaxml.config import apply_overrides, to_dict
from jaxml.errors import UserError


def test_overrides_are_parsed_by_the_type_of_the_default():
  cfg = apply_overrides(Config(), {"hidden": "64", "learning_rate": "1e-2", "head": "50,20",
                                   "cell": "lstm", "dropout": "0.25"})
  assert (cfg.hidden, cfg.learning_rate, cfg.head, cfg.cell) == (64, 0.01, (50, 20), "lstm")
  assert apply_overrides(Config(), {"head": ""}).head == ()
  assert to_dict(cfg)["head"] == [50, 20]


@pytest.mark.parametrize("overrides, message", [
    ({"hiden": "3"}, "unknown config key.*hiden.*valid keys: .*hidden"),
    ({"hidden": "many"}, "'hidden' expects an integer"),
    ({"readout": "median"}, "one of last, mean"),
    ({"learning_rate": "fast"}, "expects a number"),
])
def test_bad_overrides(overrides, message):
  with pytest.raises(UserError, match=message):
    apply_overrides(Config(), overrides)


def test_an_unregistered_cell_lists_the_registered_ones():
  with pytest.raises(UserError, match="cell.*registered cell.*rnn, lstm, gru"):
    validate(apply_overrides(Config(), {"cell": "transformer"}))


@pytest.mark.parametrize("overrides", [{"learning_rate": "-1"}, {"batch_size": "0"},
                                       {"hidden": "0"}, {"val_fraction": "1.5"},
                                       {"learning_rate": "nan"}])
def test_values_no_run_can_use(overrides):
  with pytest.raises(UserError, match="must be"):
    validate(apply_overrides(Config(), overrides))
