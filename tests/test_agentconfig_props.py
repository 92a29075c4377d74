"""Property tests of edgecore_ports.agentconfig (CPython: hypothesis, botocore)."""

import pytest
from botocore.exceptions import InvalidRegionError
from botocore.utils import validate_region_name
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore_ports import ConfigError
from edgecore_ports.agentconfig import _distance, closest_key, keys, load_config

BASE = {"device_name": "d", "fleet_name": "f", "region": "us-west-2", "model_dir": "/m",
        "state_dir": "/s"}
REGIONISH = st.text(alphabet="abcdefghijklmnopqrstuvwxyzAZ0123456789- _.\u00e9\u0661",
                    min_size=1, max_size=70)


@settings(max_examples=500, deadline=None)
@given(region=st.one_of(REGIONISH, st.text(min_size=1, max_size=70)))
def test_region_rule_is_botocores(region):
    try:
        validate_region_name(region)
        botocore_ok = True
    except InvalidRegionError:
        botocore_ok = False
    try:
        load_config(dict(BASE, region=region), environ={})
        ours = True
    except ConfigError as exc:
        assert exc.field == "region"
        ours = False
    assert ours == botocore_ok, region


@settings(max_examples=300, deadline=None)
@given(a=st.text(max_size=12), b=st.text(max_size=12), c=st.text(max_size=12))
def test_distance_is_a_metric(a, b, c):
    assert _distance(a, a) == 0
    assert _distance(a, b) == _distance(b, a)
    assert _distance(a, c) <= _distance(a, b) + _distance(b, c)
    assert abs(len(a) - len(b)) <= _distance(a, b) <= max(len(a), len(b))


@pytest.mark.parametrize("key", [k[0] for k in keys()])
def test_one_edit_away_from_a_key_suggests_that_key(key):
    for typo in (key + "x", key[:-1], key[1:] if len(key) > 8 else key + "s"):
        if typo in [k[0] for k in keys()]:
            continue
        assert closest_key(typo) == key, typo
        with pytest.raises(ConfigError) as info:
            load_config(dict(BASE, **{typo: 1}), environ={})
        assert info.value.field == typo and key in str(info.value)
