"""`python -m local_stack {install,serve}`: install the pinned server, or run the stack."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from local_stack.seed import seed
from local_stack.server_venv import ServerInstallError, ensure_server_venv
from local_stack.stack import LocalStack


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m local_stack")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="build the cached Reflexio server venv")
    serve = sub.add_parser("serve", help="run the stand-in LLM and Reflexio server until ^C")
    serve.add_argument("--port", type=int, default=8081)
    serve.add_argument("--state-dir", type=Path, default=Path(".state/reflexio"))
    serve.add_argument("--seed", action="store_true", help="publish a few conversations")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            print(ensure_server_venv())
            return 0
        with LocalStack(state_dir=args.state_dir.resolve(), port=args.port) as stack:
            if args.seed:
                seed(stack.url)
            print(f"Reflexio server: {stack.url}  (stand-in LLM: {stack.llm.base_url})")
            print("export REFLEXIO_URL=" + stack.url)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            signal.pause()
    except ServerInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
