"""The packages' public API: every exported name resolves to the thing it names."""

from __future__ import annotations

import inspect

import nh_data
import nh_models


def test_nh_models_exports_resolve():
    for name in nh_models.__all__:
        obj = getattr(nh_models, name)
        assert getattr(obj, "__name__", name) == name or name == "MODEL_NAMES", name
    assert nh_models.MODEL_NAMES == ("deeponet", "varonet", "traonet", "mambonet", "fno", "symponet")
    assert inspect.isclass(nh_models.ShardDataset) and callable(nh_models.get_model)


def test_nh_data_exports_resolve():
    for name in nh_data.__all__:
        assert getattr(nh_data, name) is not None, name
    assert set(nh_data.METHODS) == {"leapfrog", "yoshida4", "yoshida8", "kahanli8", "rk4"}
