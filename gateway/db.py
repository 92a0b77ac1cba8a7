"""Run ORM work off the event loop, on a small dedicated thread pool with long-lived connections."""

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import close_old_connections

T = TypeVar("T")
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gateway-db")


def _with_fresh_connection(fn: Callable[..., T], *args, **kwargs) -> T:
    close_old_connections()  # drop connections that died or outlived CONN_MAX_AGE
    return fn(*args, **kwargs)


async def run_db(fn: Callable[..., T], /, *args, **kwargs) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(_with_fresh_connection, fn, *args, **kwargs))
