"""One tuner interface: every tuner is a :class:`vlal.tuners.Tuner` whose ``inputs`` matches
its registry entry (issue 10, item 5, first part)."""

import importlib.util

import numpy as np
import pytest

from vlal.tuners import TUNERS, Tuner, make_tuner


def test_tuner_is_abstract():
    with pytest.raises(TypeError):
        Tuner()

    class NoPredict(Tuner):
        def fit(self, inputs, labels):
            return self

    with pytest.raises(TypeError, match="predict_proba"):
        NoPredict()


def test_feature_tuners_follow_the_interface():
    w0 = np.eye(3, 4, dtype=np.float32)
    x = np.array([[1, 0.1, 0, 0], [0, 1, 0.2, 0], [0, 0, 1, 0.1]], dtype=np.float32)
    for name, spec in TUNERS.items():
        if spec.factory is None:
            continue
        tuner = make_tuner(name, w0)
        assert isinstance(tuner, Tuner), name
        assert tuner.inputs == spec.inputs == "features", name
        assert tuner.fit(x, np.array([0, 1, 2])) is tuner
        np.testing.assert_allclose(tuner.predict_proba(x).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="CLIP tuners need torch")
def test_clip_tuners_declare_their_inputs():
    from vlal.clip import _tuners

    classes = {"coop": _tuners.CoOp, "vpt": _tuners.VPT, "maple": _tuners.MaPLe}
    for name, cls in classes.items():
        assert issubclass(cls, Tuner) and cls.inputs == TUNERS[name].inputs, name
