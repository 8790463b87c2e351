"""A fork server for the Reflexio server, run by the server venv's Python (stdlib only).

Most of a server start is importing its third-party libraries (litellm and openai: about
three quarters of the import time, measured with ``python -X importtime``). A test suite
restarts the server hundreds of times (every snapshot restore), so this process imports
them once and then, for each JSON line read from stdin (``{"args": [...], "cwd": ...,
"log": ...}``), forks a child that runs ``python -m reflexio.server <args>`` as a fresh
process would, with stdout and stderr appended to ``log``, and writes the child's pid on
stdout. Only third-party modules are preloaded: the server's own modules, its settings and
its data are read by the child, after the fork. It refuses to fork with a thread running
(the child would inherit locks other threads hold). Run with ``-P``: ``local_stack/`` is not
put on the children's import path.

Children start a session of their own (their pid is their process group) and get SIGTERM
when this process dies; this process gets SIGTERM when the one that started it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import runpy
import signal
import sys
import threading
import traceback

PRELOAD = ("litellm", "openai", "fastapi", "uvicorn", "aiohttp", "slowapi")
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGTERM this process when the process that started it dies (Linux), so a killed test
    run or main job never leaves a server behind. Also the preexec_fn of local launches."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _run_server(request: dict) -> None:
    """In the child: become a server process, run it, never return."""
    code = 1
    try:
        os.setsid()
        die_with_parent()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.chdir(request["cwd"])
        sys.argv = ["reflexio.server", *request["args"]]
        runpy.run_module("reflexio.server", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    for name in PRELOAD:
        with contextlib.suppress(ImportError):  # the child imports what it needs
            importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped as they exit
    if threading.active_count() != 1:  # a fork would copy locks other threads hold (H18)
        sys.exit(f"an import started threads: {[t.name for t in threading.enumerate()]}")
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_server(request)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
