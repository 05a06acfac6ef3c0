"""Run one benchmark leg in a fresh child process, so each leg starts cold and its memory is its own."""

from __future__ import annotations

import multiprocessing

from rag.lifetime import die_with_parent


def run_in_child(fn, *args):
    """``fn(*args)`` in a spawned process that ends when this one does."""
    with multiprocessing.get_context("spawn").Pool(1, initializer=die_with_parent) as pool:
        return pool.apply(fn, args)
