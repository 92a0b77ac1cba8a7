"""Run ORM work off the event loop, on a small dedicated thread pool with long-lived connections."""

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import InterfaceError, OperationalError, close_old_connections

from gateway.errors import GatewayError

T = TypeVar("T")
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gateway-db")


def _with_fresh_connection(fn: Callable[..., T], *args, **kwargs) -> T:
    close_old_connections()  # drop connections that died or outlived CONN_MAX_AGE
    return fn(*args, **kwargs)


class DatabaseUnavailable(GatewayError):
    """The database refused or dropped the connection: callers serve what they last read, or the client
    hears 503 in its API's shape and retries."""

    def __init__(self) -> None:
        super().__init__(503, "service_unavailable", "Hypereal's database is unavailable; retry shortly.",
                         "database_unavailable", headers={"retry-after": "5"})


async def run_db(fn: Callable[..., T], /, *args, **kwargs) -> T:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_executor, functools.partial(_with_fresh_connection, fn, *args, **kwargs))
    except (OperationalError, InterfaceError) as exc:
        raise DatabaseUnavailable() from exc
