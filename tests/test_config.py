import re
from pathlib import Path

import pytest

from streaming_lstm.core.config import ConfigError, effective_decay, parse_duration
from streaming_lstm.core.config_load import load_config

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "conf" / "iris.toml"


def test_file_overrides_defaults_and_flags_override_file() -> None:
    cfg = load_config(IRIS)
    assert cfg.model.timesteps == 4 and cfg.data.label == "species"
    cfg2 = load_config(IRIS, {"model.hidden": "128,256", "stream.partitions": "5", "train.learning_rate": "0.001"})
    assert cfg2.model.hidden == (128, 256)
    assert cfg2.stream.partitions == 5
    assert cfg2.train.learning_rate == 0.001
    assert load_config(IRIS, {"model.hidden": "[16]"}).model.hidden == (16,)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.hiden": "3"}, "unknown key 'model.hiden'"),
        ({"nosuch.key": 1}, "unknown setting 'nosuch.key'"),
        ({"model.timesteps": 3}, "model.timesteps: timesteps x features_per_step (3 x 1) must equal the 4 feature columns"),
        ({"model.hidden": "32,0"}, "model.hidden: sizes must be positive, got [32, 0]"),
        ({"train.optimizer": "adagrad"}, "train.optimizer: must be one of adam, sgd, rmsprop, got 'adagrad'"),
        ({"stream.plan": "sometimes"}, "stream.plan: must be one of auto, once, batch, got 'sometimes'"),
        ({"stream.train_in": "executor"}, "stream.train_in: must be one of auto, driver, workers, got 'executor'"),
        ({"stream.driver_rows": -1}, "stream.driver_rows: must be >= 0, got -1"),
        ({"train.batch_size": 0}, "train.batch_size: must be positive, got 0"),
        ({"train.prequential": "row"}, "train.prequential: must be one of auto, batch, step, got 'row'"),
        ({"stream.partitions": -1}, "stream.partitions: must be positive, got -1"),
        ({"stream.decay": 1.5}, "stream.decay: must be in [0, 1], got 1.5"),
        ({"stream.trigger": "soon"}, "stream.trigger: expected a duration"),
        ({"train.learning_rate": "fast"}, "train.learning_rate: expected float, got 'fast'"),
        ({"data.classes": '["a"]'}, "data.classes: at least two classes are required"),
    ],
)
def test_bad_values_name_key_and_value(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(IRIS, overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_scoring_in_the_training_steps_is_for_classification() -> None:
    """ "auto" (the default) scores a classifier in the training steps and a forecast with the
    batch's model; "step" on a forecast is an error naming the key and value."""
    assert load_config(IRIS, {"train.prequential": "step"}).scores_in_steps()
    assert load_config(IRIS).train.prequential == "auto" and load_config(IRIS).scores_in_steps()
    assert not load_config(IRIS, {"train.prequential": "batch"}).scores_in_steps()
    solar = IRIS.parent / "solar.toml"
    assert not load_config(solar).scores_in_steps() and not load_config(solar, {"train.prequential": "auto"}).scores_in_steps()
    with pytest.raises(ConfigError) as err:
        load_config(solar, {"train.prequential": "step"})
    assert str(err.value) == "train.prequential: scores classification only: a forecast needs \"batch\", got 'step'"


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    text = IRIS.read_text().replace('optimizer = "adam"', 'optimizer = "adam"\nlearnig_rate = 0.1')
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"unknown key 'train.learnig_rate' in .*bad.toml"):
        load_config(bad)
    (tmp_path / "sec.toml").write_text("[modle]\nseed = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section '\[modle\]'"):
        load_config(tmp_path / "sec.toml")


def test_durations_and_half_life() -> None:
    assert parse_duration("2s") == 2.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1m") == 60.0
    assert parse_duration("3") == 3.0
    assert parse_duration("1 second") == 1.0 and parse_duration("500 milliseconds") == 0.5
    assert parse_duration("2 minutes") == 120.0 and parse_duration("1 hour") == 3600.0 and parse_duration("5 sec") == 5.0
    with pytest.raises(ConfigError, match="--trigger: expected a duration like '2s' or '500ms', got '1 fortnight'"):
        parse_duration("1 fortnight", "--trigger")
    cfg = load_config(IRIS, {"stream.half_life_batches": 2})
    assert effective_decay(cfg.stream) == pytest.approx(0.5**0.5)
    assert effective_decay(load_config(IRIS, {"stream.decay": 0.3}).stream) == 0.3


def test_round_trip_through_dict() -> None:
    from streaming_lstm.core.config_load import from_dict

    cfg = load_config(IRIS, {"model.hidden": "8,4"})
    assert from_dict(cfg.to_dict()) == cfg


def test_columns_known_ahead_are_forecast_features_and_not_targets() -> None:
    """data.known: a bad entry is named with the key and the value; a good one loads."""
    from streaming_lstm.testing.event_synth import SINE_SETTINGS

    two = {**SINE_SETTINGS, "data.columns": ["entity", "time", "value", "price"], "data.features": ["value", "price"], "model.features_per_step": 2}
    assert load_config(None, {**two, "data.known": ["price"]}).data.known_positions() == [1]
    for known, message in [
        (["cost"], "data.known: each must be one of data.features (not: cost), got ['cost']"),
        (["value"], "data.known: a target cannot be known ahead (remove: value), got ['value']"),
        (["price", "price"], "data.known: names must be unique"),
    ]:
        with pytest.raises(ConfigError) as err:
            load_config(None, {**two, "data.known": known})
        assert message in str(err.value)
    with pytest.raises(ConfigError, match=re.escape('data.known: is for data.task = "forecast"')):
        load_config(IRIS, {"data.known": ["sepal_length"]})
