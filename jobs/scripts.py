"""The Lua scripts in jobs/lua/, and how a pipeline that carries one is sent."""
import functools
from pathlib import Path

from redis.exceptions import NoScriptError

_DIR = Path(__file__).with_name("lua")


@functools.cache
def source(*names: str) -> str:
    """The text of the named scripts, joined in order (a shared function first)."""
    return "\n".join((_DIR / f"{name}.lua").read_text() for name in names)


def register(redis, *names: str):
    """A redis-py Script of the named files (see source)."""
    return redis.register_script(source(*names))


def pipelined(redis, transaction: bool, before, script, script_keys: list, args: list,
              after=None) -> list:
    """One round trip: the commands `before(pipe)` adds, the script, then those `after(pipe)`
    adds; their replies. A Redis that forgot the script (restarted) is given it, and the whole
    pipeline is sent again."""
    for attempt in (1, 2):
        pipe = redis.pipeline(transaction=transaction)
        if before:
            before(pipe)
        pipe.evalsha(script.sha, len(script_keys), *script_keys, *args)
        if after:
            after(pipe)
        try:
            return pipe.execute()
        except NoScriptError:
            if attempt == 2:
                raise
            redis.script_load(script.script)
