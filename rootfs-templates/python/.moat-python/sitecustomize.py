# moat's python profile: an uncaught MemoryError ends the interpreter with exit code 3
# (the profile's out_of_memory_exit_code), so the verdict is memory_limit.
import os
import sys


def _moat_excepthook(kind, value, tb, _previous=sys.excepthook):
    _previous(kind, value, tb)
    if issubclass(kind, MemoryError):
        # os._exit skips the interpreter's shutdown, which would flush these.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(3)


sys.excepthook = _moat_excepthook
