"""The NumPy backend: always available; the default interface unchanged."""

from __future__ import annotations

import numpy as np

from graphrnn.backends.base import Backend


class NumpyBackend(Backend):
    """Runs Programs with NumPy on the CPU."""

    name = "numpy"
    xp = np
