"""The media process's collector policy: start-up objects frozen, full collections spaced out."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from centralita.media import collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_settle_freezes_what_is_loaded_and_spaces_out_full_collections() -> None:
    young, middle, _ = gc.get_threshold()
    loaded = [object(), {"kept": [1, 2]}]  # objects alive at start-up
    collector.settle()
    assert gc.get_threshold() == (young, middle, collector.FULL_EVERY)
    assert collector.FULL_EVERY > 10  # rarer than CPython's own
    frozen = gc.get_freeze_count()
    assert frozen > 0
    tracked = {id(obj) for obj in gc.get_objects()}
    assert id(loaded[1]) not in tracked  # frozen: no collection walks it


@pytest.mark.usefixtures("restored_collector")
def test_settle_takes_another_spacing_and_refuses_a_nonsense_one() -> None:
    collector.settle(25)
    assert gc.get_threshold()[2] == 25
    with pytest.raises(ValueError, match="full_every must be 1 or more"):
        collector.settle(0)
