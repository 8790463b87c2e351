"""Serve the profile regeneration (`flow.serve`): a real Prefect runner executes each of its
runs in a child process, and kills that process when the run is cancelled through the API.

    python -m tests.reliability.served <deployment name>
"""

from __future__ import annotations

import sys

from flows.profile_regeneration import profile_regeneration

if __name__ == "__main__":
    profile_regeneration.serve(name=sys.argv[1], limit=1, print_starting_message=False)
