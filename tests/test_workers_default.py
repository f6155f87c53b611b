"""The default of --workers (ids/parallel/options.py): one process for small captures and single cores, a worker
per core on 2 and 3 cores, one core left to the parent from 4 up; an explicit --workers always wins."""
from __future__ import annotations

import argparse

import pytest

from ids.errors import UserError
from ids.parallel import options, runner


def _args(**kw):
    return argparse.Namespace(**{"workers": None, "deep": False, **kw})


@pytest.fixture
def capture(tmp_path):
    def make(size: int):
        p = tmp_path / f"c{size}.pcap"
        with open(p, "wb") as f:
            f.truncate(size)
        return [str(p)]
    return make


@pytest.mark.parametrize("cores,big,small", [(1, 1, 1), (2, 2, 1), (3, 3, 1), (4, 3, 1), (16, 15, 1)])
def test_default_by_cores_and_size(monkeypatch, capture, cores, big, small):
    monkeypatch.setattr(runner, "default_workers", lambda: cores)
    assert options.workers_for(_args(), capture(options.SMALL_INPUT)) == big
    assert options.workers_for(_args(), capture(options.SMALL_INPUT - 1)) == small


def test_explicit_and_deep(monkeypatch, capture):
    monkeypatch.setattr(runner, "default_workers", lambda: 8)
    big = capture(options.SMALL_INPUT)
    assert options.workers_for(_args(workers=1), big) == 1
    assert options.workers_for(_args(deep=True), big) == 1
    with pytest.raises(UserError):
        options.workers_for(_args(workers=0), big)
    with pytest.raises(UserError):
        options.workers_for(_args(workers=2, deep=True), big)
