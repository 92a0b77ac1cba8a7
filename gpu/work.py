"""Work of the gpu app's endpoints that must not run on the event loop: file bytes, the store, providers'
job APIs — on a pool of its own, so that a long upload or a slow provider never holds one of the threads
the hot path's key and catalog lookups wait for (gateway.db)."""

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import close_old_connections

T = TypeVar("T")
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gpu")


def _fresh(fn: Callable[..., T], /, *args, **kwargs) -> T:
    close_old_connections()  # as gateway.db does: drop connections that died or outlived CONN_MAX_AGE
    return fn(*args, **kwargs)


async def off_loop(fn: Callable[..., T], /, *args, **kwargs) -> T:
    return await asyncio.get_running_loop().run_in_executor(_pool, functools.partial(_fresh, fn, *args, **kwargs))
