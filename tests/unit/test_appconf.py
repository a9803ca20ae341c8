import pytest

from labelzoo.appconf import APP_CONF, conf_bool, conf_value, parse_conf
from labelzoo.errors import LabelZooError


def test_parse_pairs_and_dict():
    assert parse_conf("models=all, skip_scoring=true") == {"models": "all", "skip_scoring": "true"}
    assert parse_conf({"skip_trainers": True, "bundles": ["a", "b"]}) == {"skip_trainers": "true", "bundles": "a,b"}
    assert parse_conf(None) == {} and parse_conf("") == {}


def test_unknown_key_lists_known_keys():
    with pytest.raises(LabelZooError, match="unknown --conf key 'sam'.*models"):
        parse_conf("sam=true")


def test_malformed_pair():
    with pytest.raises(LabelZooError, match="not key=value"):
        parse_conf("models")


def test_defaults_and_booleans():
    assert conf_value({}, "models") == APP_CONF["models"].default
    assert conf_bool({"skip_scoring": "Yes"}, "skip_scoring") is True
    with pytest.raises(LabelZooError, match="skip_scoring must be true or false"):
        conf_bool({"skip_scoring": "maybe"}, "skip_scoring")
