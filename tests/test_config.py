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


@pytest.mark.parametrize("overrides", [{"learning_rate": "-1"}, {"batch_size": "-1"},
                                       {"epochs": "-2"}, {"patience": "-2"},
                                       {"hidden": "0"}, {"val_fraction": "1.5"},
                                       {"learning_rate": "nan"}])
def test_values_no_run_can_use(overrides):
  with pytest.raises(UserError, match="must be"):
    validate(apply_overrides(Config(), overrides))


@pytest.mark.parametrize("n_train, steps, n_val, batch, epochs, ensemble, keep, patience", [
    (36, 100, 4, 8, 100, 5, "last", 0),         # BasicMotions: 4 validation series cannot rank
    (243, 29, 27, 8, 100, 5, "last", 0),        # JapaneseVowels: 30 steps per epoch
    (2700, 150, 300, 64, 74, 1, "best_val", 14),  # the seed's data3.h5: one network fills the budget
    (5300, 150, 590, 128, 38, 1, "best_val", 7),  # ~5.9k accelerometer windows: 41 steps of 128
    (50000, 150, 5000, 256, 10, 1, "best_val", 5),  # the batch stops growing; epochs bottom out
    (1000, 100, 100, 32, 100, 3, "best_val", 20),  # 3 members of 1e7 fit the budget of 3e7
])
def test_activity_defaults_scale_with_the_data(n_train, steps, n_val, batch, epochs, ensemble,
                                               keep, patience):
  from experiments.activity import scaled_by_data
  cfg, why = scaled_by_data(Config(), n_train, steps, n_val)
  assert (cfg.batch_size, cfg.epochs, cfg.ensemble, cfg.keep, cfg.patience) == (
      batch, epochs, ensemble, keep, patience)
  assert set(why) == {"batch_size", "epochs", "ensemble", "keep", "patience"}
  assert f"{n_train} training series" in why["batch_size"]
  validate(cfg)


def test_an_explicit_patience_means_early_stopping_on_small_data_too():
  from experiments.activity import scaled_by_data
  cfg, _ = scaled_by_data(apply_overrides(Config(), {"patience": "10"}), 36, 100, 4)
  assert (cfg.keep, cfg.patience) == ("best_val", 10)
  validate(cfg)
  with pytest.raises(UserError, match="patience.*keep=last"):
    validate(apply_overrides(Config(), {"patience": "10", "keep": "last"}))


def test_explicit_activity_settings_are_not_rescaled():
  from experiments.activity import scaled_by_data
  given = apply_overrides(Config(), {"batch_size": "32", "epochs": "7", "patience": "0",
                                    "keep": "best_val", "ensemble": "2"})
  cfg, why = scaled_by_data(given, 5300, 150, 590)
  assert (cfg.batch_size, cfg.epochs, cfg.patience, cfg.ensemble) == (32, 7, 0, 2) and why == {}


@pytest.mark.parametrize("n_train, steps, bidirectional, epochs, ensemble", [
    (36, 100, True, 100, 5),    # BasicMotions: 5 two-way networks of 3.6e5 fit 3e7
    (243, 29, True, 100, 5),    # JapaneseVowels
    (1000, 100, True, 100, 1),  # one two-way network of 2e7 fits, two do not
    (5300, 150, True, 19, 1),   # ~5.9k windows: two directions at half a one-way run's epochs
    (6674, 128, True, 18, 1),   # the smartphone set of BUILD_NOTES (35 epochs one-way)
    (12000, 150, False, 17, 1),  # two directions would exceed the budget even at 10 epochs
])
def test_the_gru_is_bidirectional_while_the_work_budget_allows(n_train, steps, bidirectional,
                                                               epochs, ensemble):
  from experiments.activity import default_preset, scaled_by_data
  cfg, why = scaled_by_data(default_preset("gru"), n_train, steps, n_train // 9)
  assert (cfg.bidirectional, cfg.epochs, cfg.ensemble) == (bidirectional, epochs, ensemble)
  assert why["bidirectional"].startswith(f"{bidirectional} (by the data")
  validate(cfg)
  # Only the GRU's default asks; an explicit value (or another cell) is kept as given.
  assert default_preset("lstm").bidirectional is False
  one_way = apply_overrides(default_preset("gru"), {"bidirectional": "false"})
  assert scaled_by_data(one_way, n_train, steps, n_train // 9)[0].bidirectional is False
  assert apply_overrides(one_way, {"bidirectional": "none"}).bidirectional is None


def test_an_unresolved_bidirectional_is_refused_by_the_model():
  import jax

  from experiments.activity import default_preset
  from jaxml.models import sequence_classifier
  with pytest.raises(ValueError, match="bidirectional.*resolve it first"):
    sequence_classifier.init(jax.random.key(0), default_preset("gru"), n_features=3,
                             n_classes=2)


def test_activity_epoch_mode_auto_loops_over_steps_for_a_conv_front_end():
  """Convolutions inside a scan are slow on XLA:CPU: epoch_mode=auto takes the loop epoch with
  a conv front end (and says so), the scan epoch without one; an explicit mode is kept."""
  from experiments.activity import scaled_by_data
  cfg, why = scaled_by_data(Config(), 36, 100, 4)
  assert cfg.epoch_mode == "scan" and "epoch_mode" not in why
  conv = apply_overrides(Config(), {"conv": "16,16"})
  cfg, why = scaled_by_data(conv, 36, 100, 4)
  assert cfg.epoch_mode == "loop" and why["epoch_mode"].startswith("loop (a conv front end")
  given = apply_overrides(conv, {"epoch_mode": "scan"})
  assert scaled_by_data(given, 36, 100, 4)[0].epoch_mode == "scan"
