"""How the simulator asks the kernel for memory while it makes the product's event stream.

NumPy advises the kernel to back every large array with transparent huge pages (``madvise``). Where the kernel
compacts memory on demand for such advice (``/sys/kernel/mm/transparent_hugepage/defrag`` set to ``madvise``,
the common default), a day of events, whose arrays are all fresh and large, spends as much time in the kernel
finding huge pages as in its own work (docs/simulated-enterprise.md). The product step therefore allocates
with ordinary pages, and gives the process its setting back when it is done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from numpy._core import multiarray

# NumPy's switch for the advice (its own import sets it from NUMPY_MADVISE_HUGEPAGE); it returns the previous
# setting. Absent from a NumPy without it: then there is nothing to switch.
_advise: Callable[[bool], bool] | None = getattr(multiarray, "_set_madvise_hugepage", None)
# The switch is the process's: blocks that overlap (simulations in threads) share one change, undone by the last.
_lock = threading.Lock()
_inside = 0
_before = True


@contextmanager
def ordinary_pages() -> Iterator[None]:
    """NumPy's large arrays without the huge page advice inside the block; the setting as it was after it."""
    global _inside, _before
    if _advise is None:
        yield
        return
    with _lock:
        if _inside == 0:
            _before = _advise(False)
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                _advise(_before)
