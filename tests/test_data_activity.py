"""Activity loaders on tiny generated files, malformed ones included."""

import h5py
import numpy as np
import pytest

from jaxml.data import activity
from jaxml.data.splits import (channel_stats, group_holdout, holdout_splits, standardize,
                               stratified_holdout)
from jaxml.errors import UserError


def write_h5(path, n_train=12, n_test=6, t=10, c=3, k=6, drop=(), **replace):
  rng = np.random.default_rng(0)
  arrays = {"trX": rng.standard_normal((n_train, t, c)).astype(np.float32),
            "trY": np.eye(k)[np.arange(n_train) % k],
            "tstX": rng.standard_normal((n_test, t, c)).astype(np.float32),
            "tstY": np.eye(k)[np.arange(n_test) % k]}
  arrays.update(replace)
  with h5py.File(path, "w") as f:
    for key, value in arrays.items():
      if key not in drop:
        f[key] = value
  return path


def test_seed_h5_class_names_attribute(tmp_path):
  """Another six-class file in data3.h5's layout names its classes in a `class_names`
  attribute (comma-separated or a list); a count that does not match is one error line."""
  for value in ("walk, up,down,sit,stand,lie", ["walk", "up", "down", "sit", "stand", "lie"]):
    path = write_h5(tmp_path / "har.h5")
    with h5py.File(path, "a") as f:
      f.attrs["class_names"] = value
    assert activity.load_activity(str(path)).class_names == (
        "walk", "up", "down", "sit", "stand", "lie")
  with h5py.File(path, "a") as f:
    f.attrs["class_names"] = "walk,run"
  with pytest.raises(UserError, match="class_names attribute names 2 class.*labels have 6"):
    activity.load_activity(str(path))


def test_seed_h5_roundtrip(tmp_path):
  data = activity.load_activity(str(write_h5(tmp_path / "data3.h5")))
  assert data.x_train.shape == (12, 10, 3) and data.x_train.dtype == np.float32
  assert data.y_train.tolist() == [0, 1, 2, 3, 4, 5] * 2
  assert data.class_names == activity.SEED_CLASSES
  assert data.len_train is None and data.len_test is None  # equal length: no lengths carried
  # a directory holding data3.h5 works too
  assert activity.load_activity(str(tmp_path)).x_test.shape == (6, 10, 3)


def test_seed_h5_subject_ids_become_groups(tmp_path):
  """A data3.h5-layout trS (one subject id per training window) is kept as groups_train; one
  of the wrong shape or type is one error line; without it there are no groups."""
  people = np.repeat(np.arange(4), 3)
  data = activity.load_activity(str(write_h5(tmp_path / "a.h5", trS=people)))
  assert data.groups_train.tolist() == people.tolist() and data.describe()["train_groups"] == 4
  assert activity.load_activity(str(write_h5(tmp_path / "b.h5"))).groups_train is None
  for bad in (people[:5], people.astype(np.float32)):
    with pytest.raises(UserError, match="trS has shape.*one integer subject id"):
      activity.load_activity(str(write_h5(tmp_path / "c.h5", trS=bad)))


def test_group_holdout_keeps_each_person_on_one_side():
  """Whole groups are held out, at least the fraction of the examples and at least one group
  on each side, chosen by the seed."""
  groups = np.repeat([3, 7, 9, 11, 20], [10, 30, 20, 25, 15])
  for seed in range(6):
    keep, held = group_holdout(groups, 0.25, seed)
    assert sorted(np.r_[keep, held].tolist()) == list(range(100))
    assert not set(groups[keep]) & set(groups[held])
    # the fraction is reached, and overshot by less than the largest group (30 examples)
    assert 25 <= len(held) < 25 + 30 and set(groups[keep])
  assert not np.array_equal(group_holdout(groups, 0.25, 0)[1], group_holdout(groups, 0.25, 1)[1])
  assert set(groups[group_holdout(groups, 0.99, 0)[0]])  # never every group
  with pytest.raises(UserError, match="at least 2 groups.*val_by=series"):
    group_holdout(np.zeros(5, int), 0.2, 0)


def test_validation_by_person_where_the_data_names_enough_people(tmp_path):
  """val_by=auto holds out people when there are at least 1 / fraction of them, else random
  windows; val_by=group without subject ids is one error line."""
  people = np.repeat(np.arange(12), 2)  # 24 windows of 12 people
  named = activity.load_activity(str(write_h5(tmp_path / "a.h5", n_train=24, trS=people)))
  splits, notes = holdout_splits(named, 0.1, seed=0, by="auto")
  assert notes["val_by"] == "group" and len(notes["val_groups"]) == 2 and notes["n_val"] == 4
  assert len(splits["val"][1]) == 4 and len(splits["train"][1]) == 20
  assert holdout_splits(named, 0.05, seed=0, by="auto")[1]["val_by"] == "series"  # 12 < 20
  assert holdout_splits(named, 0.1, seed=0, by="series")[1]["val_by"] == "series"
  unnamed = activity.load_activity(str(write_h5(tmp_path / "b.h5", n_train=24)))
  assert holdout_splits(unnamed, 0.1, seed=0, by="auto")[1]["val_by"] == "series"
  with pytest.raises(UserError, match="names no group.*val_by=series"):
    holdout_splits(unnamed, 0.1, seed=0, by="group")


def test_seed_h5_integer_labels(tmp_path):
  p = write_h5(tmp_path / "d.h5", trY=np.arange(12) % 3, tstY=np.arange(6) % 3)
  data = activity.load_activity(str(p))
  assert data.class_names == ("class_0", "class_1", "class_2")


@pytest.mark.parametrize("kwargs, message", [
    (dict(drop=("trX",)), "lacks dataset.*trX"),
    (dict(trX=np.zeros((12, 10))), "trX has shape"),
    (dict(tstX=np.zeros((6, 9, 3))), "differ"),
    (dict(trY=np.eye(6)[:5]), "trY has 5 rows"),
    (dict(trY=np.full((12, 6), 0.5)), "not one-hot"),
    (dict(trX=np.full((12, 10, 3), np.nan)), "NaN"),
    (dict(tstY=np.array(["a"] * 6, dtype="S1")), "tstY has shape"),
])
def test_seed_h5_bad_contents(tmp_path, kwargs, message):
  with pytest.raises(UserError, match=message):
    activity.load_activity(str(write_h5(tmp_path / "bad.h5", **kwargs)))


def test_not_hdf5_and_missing_and_truncated(tmp_path):
  (tmp_path / "fake.h5").write_text("hello")
  with pytest.raises(UserError, match="not an HDF5 file"):
    activity.load_activity(str(tmp_path / "fake.h5"))
  with pytest.raises(UserError, match="does not exist"):
    activity.load_activity(str(tmp_path / "nope.h5"))
  good = write_h5(tmp_path / "good.h5").read_bytes()
  (tmp_path / "cut.h5").write_bytes(good[: len(good) // 2])
  with pytest.raises(UserError, match="cut.h5"):
    activity.load_activity(str(tmp_path / "cut.h5"))


def wisdm_text(users=(1, 2, 3), per_run=40):
  lines = []
  for u in users:
    for act in ("Walking", "Jogging", "Sitting"):
      for i in range(per_run):
        lines.append(f"{u},{act},{1000 + i},{i * 0.1:.3f},{u + 0.5},{-1.0};")
  return lines


def test_wisdm_windows_split_by_user_and_skip_malformed(tmp_path, capsys):
  lines = wisdm_text()
  lines.insert(5, "1,Walking,12,0.1,0.2;")          # 5 fields
  lines.insert(9, "1,Walking,12,abc,0.2,0.3;")      # not a number
  lines.insert(13, "1,Flying,12,0.1,0.2,0.3;")      # unknown activity
  lines.insert(17, "1,Walking,12,nan,0.2,0.3;")     # NaN
  lines.append("3,Sitting,99,1.0,2.0,3.0,;")        # trailing comma (as in the real file)
  (tmp_path / "WISDM_ar_v1.1_raw.txt").write_text("\n".join(lines) + "\n")
  data = activity.load_activity(str(tmp_path), window=10, stride=10, test_user_fraction=0.34)
  assert data.notes["malformed_records_skipped"] == 4
  assert data.notes["records"] == 3 * 3 * 40 + 1
  assert len(data.notes["test_users"]) == 1
  # 40-sample runs give 4 windows each; user 3's Sitting run has 41 samples, still 4 windows
  assert len(data.y_train) + len(data.y_test) == 3 * 3 * 4
  assert len(data.y_test) == 12
  assert data.x_train.shape[1:] == (10, 3) and not data.variable_length
  # the training windows keep their users, for validation by person
  assert sorted(set(data.groups_train.tolist())) == sorted({1, 2, 3} - set(
      data.notes["test_users"]))
  # x of every window is the run's consecutive samples
  np.testing.assert_allclose(np.diff(data.x_train[0, :, 0]), 0.1, atol=1e-5)


def test_wisdm_records_split_on_semicolons_within_a_line():
  recs, skipped = activity.parse_wisdm("1,Walking,1,0,0,0;2,Jogging,2,1,1,1;\n\n;")
  assert [r[:2] for r in recs] == [(1, 5), (2, 1)] and skipped == 0


def test_wisdm_nothing_usable(tmp_path):
  (tmp_path / "w.txt").write_text("garbage\nmore garbage\n")
  with pytest.raises(UserError, match="no WISDM records"):
    activity.load_activity(str(tmp_path / "w.txt"))
  (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81" * 10)
  with pytest.raises(UserError, match="not a text file"):
    activity.load_activity(str(tmp_path / "bin.txt"))


def test_embedded_basic_motions():
  data = activity.load_activity(None)
  assert data.x_train.shape == (40, 100, 6) and data.x_test.shape == (40, 100, 6)
  assert set(data.class_names) == {"standing", "running", "walking", "badminton"}
  assert np.bincount(data.y_train).tolist() == [10, 10, 10, 10]
  assert not data.variable_length and "series_length" not in data.describe()
  acc = activity.load_activity(None, channels="accelerometer")
  np.testing.assert_array_equal(acc.x_train, data.x_train[..., :3])


def test_sktime_sets_by_name_including_a_variable_length_one():
  data = activity.load_activity("sktime:JapaneseVowels")
  assert data.x_train.shape == (270, 29, 12) and data.x_test.shape == (370, 29, 12)
  assert data.variable_length and (data.len_train.min(), data.len_test.max()) == (7, 29)
  with pytest.raises(UserError, match="no Nope/Nope_TRAIN.ts; valid sktime:NAME: .*BasicMotions"):
    activity.load_activity("sktime:Nope")


def test_cross_validation_folds_partition_the_training_series():
  from benchmarks.activity_cv import fold_data
  from jaxml.data.splits import stratified_folds
  data = activity.load_activity("sktime:JapaneseVowels")
  folds = stratified_folds(data.y_train, 4, seed=0)
  assert sorted(np.concatenate(folds).tolist()) == list(range(270))
  for held in folds:  # every class in every fold, sizes within one series per class
    assert len(np.unique(data.y_train[held])) == 9
    part = fold_data(data, held)
    np.testing.assert_array_equal(part.x_test, data.x_train[held])
    np.testing.assert_array_equal(part.len_test, data.len_train[held])
    assert len(part.y_train) + len(part.y_test) == 270


def test_cross_validation_folds_by_person(tmp_path):
  """Folds by group put each person in one fold, balanced by examples; a fold's training part
  keeps its people's ids (for its own validation by person)."""
  from benchmarks.activity_cv import fold_data
  from jaxml.data.splits import group_folds
  people = np.repeat(np.arange(8), [5, 1, 4, 2, 3, 3, 2, 4])  # 24 windows of 8 people
  data = activity.load_activity(str(write_h5(tmp_path / "a.h5", n_train=24, trS=people)))
  folds = group_folds(people, 3, seed=0)
  assert sorted(np.concatenate(folds).tolist()) == list(range(24))
  assert all(not set(people[a]) & set(people[b])  # no person in two folds
             for i, a in enumerate(folds) for b in folds[i + 1:])
  assert max(map(len, folds)) - min(map(len, folds)) <= 5  # at most the largest person apart
  part = fold_data(data, folds[0])
  np.testing.assert_array_equal(part.groups_train, people[np.setdiff1d(np.arange(24), folds[0])])
  with pytest.raises(UserError, match="3 folds by group need at least 3 groups"):
    group_folds(np.array([0, 0, 1]), 3, seed=0)


def test_ts_reader_rejects_bad_files(tmp_path):
  head = "@problemName X\n@classLabel true a b\n@data\n"
  (tmp_path / "X_TRAIN.ts").write_text(head + "1,2,3:4,5,6:a\n1,2,3:4,5,6:b\n")
  (tmp_path / "X_TEST.ts").write_text(head + "1,2,3:4,5,6:c\n")
  with pytest.raises(UserError, match="not in its @classLabel"):
    activity.load_activity(str(tmp_path / "X_TRAIN.ts"))
  (tmp_path / "X_TEST.ts").write_text(head + "1,2:4,5,6:a\n")
  with pytest.raises(UserError, match="unequal length"):
    activity.load_activity(str(tmp_path / "X_TRAIN.ts"))
  (tmp_path / "X_TEST.ts").write_text(head + "1,2,3:4,5,6:a\n")
  data = activity.load_activity(str(tmp_path / "X_TRAIN.ts"))
  assert data.x_train.shape == (2, 3, 2) and data.y_test.tolist() == [0]
  with pytest.raises(UserError, match="needs 6 channels"):
    activity.load_activity(str(tmp_path / "X_TRAIN.ts"), channels="gyroscope")


def test_holdout_is_stratified_and_statistics_come_from_train():
  y = np.repeat(np.arange(4), 10)
  keep, held = stratified_holdout(y, 0.1, seed=0)
  assert np.bincount(y[held]).tolist() == [1, 1, 1, 1]
  assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 40
  x = np.random.default_rng(0).standard_normal((40, 5, 2)).astype(np.float32) * 3 + 1
  mean, std = channel_stats(x[keep])
  z = standardize(x[keep], mean, std)
  np.testing.assert_allclose(z.mean(axis=(0, 1)), 0, atol=1e-5)
  np.testing.assert_allclose(z.std(axis=(0, 1)), 1, atol=1e-4)


def test_hapt_windows_stay_inside_one_label_run():
  """benchmarks/hapt_to_h5.py's windowing (the real development set of issue 18): windows of
  4 with step 2 inside each run of one label in 1..6; a run's short tail and labels outside
  1..6 (transitions, -1 unlabelled) give none."""
  from benchmarks.hapt_to_h5 import label_windows
  labels = np.array([1] * 7 + [-1] * 5 + [7] * 4 + [3] * 4 + [6] * 3)
  assert label_windows(labels, window=4, step=2) == [(0, 0), (2, 0), (16, 2)]
