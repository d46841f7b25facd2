import numpy as np
import pandapower.networks as pn
import pytest

from siting import UsageError
from siting.limits import StudyLimits, element_limits


def test_model_limits_win_and_defaults_fill_the_gaps():
    net = pn.mv_oberrhein()
    net.bus["max_vm_pu"] = np.nan
    net.bus.loc[net.bus.index[:5], "max_vm_pu"] = 1.08
    net.line["max_loading_percent"] = np.nan
    net.line.loc[net.line.index[0], "max_loading_percent"] = 80.0
    limits = element_limits(net, StudyLimits(), contingency=False)
    assert np.allclose(limits.vmax_pu[:5], 1.08) and np.allclose(limits.vmax_pu[5:], 1.05)
    assert limits.line_percent[0] == 80.0 and np.allclose(limits.line_percent[1:], 100.0)
    assert limits.from_model["bus max_vm_pu"] == 5 and limits.from_model["line max_loading_percent"] == 1


def test_contingency_limits_widen_the_band_and_allow_the_emergency_rating():
    net = pn.mv_oberrhein()
    normal = element_limits(net, StudyLimits(), contingency=False)
    after_outage = element_limits(net, StudyLimits(emergency_factor=1.3), contingency=True)
    assert np.allclose(after_outage.vmin_pu, np.minimum(normal.vmin_pu, 0.90))
    assert np.allclose(after_outage.vmax_pu, np.maximum(normal.vmax_pu, 1.10))
    assert np.allclose(after_outage.line_percent, normal.line_percent * 1.3)


@pytest.mark.parametrize(
    "bad",
    [
        dict(vmin_pu=1.1),
        dict(contingency_vmin_pu=1.2),
        dict(emergency_factor=0.9),
        dict(normal_loading_percent=0),
    ],
)
def test_inconsistent_limits_are_refused(bad):
    with pytest.raises(UsageError):
        StudyLimits(**bad)
