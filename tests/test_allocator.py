"""nbautodiff.allocator: glibc's thresholds set at import, unless the environment says not to."""
from __future__ import annotations

import platform
import sys

import pytest

from nbautodiff import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc only")
def test_settle_sets_the_thresholds_on_glibc(monkeypatch):
    monkeypatch.delenv(allocator.SKIP_VARIABLE, raising=False)
    assert allocator.settle() is True


def test_the_environment_can_leave_the_allocator_alone(monkeypatch):
    monkeypatch.setenv(allocator.SKIP_VARIABLE, "default")
    assert allocator.settle() is False
