"""Hopfield nets and stochastic units: storage rules, energies, recall, sampling, the demo."""

from graphrnn.hopfield.tools import *  # noqa: F403
from graphrnn.hopfield.tools import __all__  # noqa: F401
