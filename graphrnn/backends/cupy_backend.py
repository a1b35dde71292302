"""The CuPy backend (placeholder by the lead: helper-4 replaces this file)."""

from __future__ import annotations


def why_not() -> str:
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return ""


def available() -> bool:
    return why_not() == ""
