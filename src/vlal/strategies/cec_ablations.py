"""CEC ablations of the paper (Fig. 3), registered as names of their own."""

from ._register import register
from .cec import CEC

register("cec-nocal", lambda random_state=None, **kw: CEC(calibration=False, random_state=random_state, **kw))
register("cec-nonn", lambda random_state=None, **kw: CEC(neighbor_term=False, random_state=random_state, **kw))
register("cec-kmeans", lambda random_state=None, **kw: CEC(clustering="plain", random_state=random_state, **kw))
register("cec-greedy", lambda random_state=None, **kw: CEC(clustering="greedy", random_state=random_state, **kw))
