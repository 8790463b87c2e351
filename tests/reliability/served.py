"""Serve a flow (`flow.serve`): a real Prefect runner executes each of its runs in a child
process (as a worker does: the entrypoint imported, the parameters checked against the
deployment's schema), and kills that process when the run is cancelled through the API.

    python -m tests.reliability.served <deployment name> [<flow> [<parameters as JSON>]]

<flow> is `profiles` (profile regeneration, the default) or `prompt-check`; the parameters
are the deployment's.
"""

from __future__ import annotations

import json
import sys

from flows.profile_regeneration import profile_regeneration
from flows.prompt_change import prompt_change

FLOWS = {"profiles": profile_regeneration, "prompt-check": prompt_change}

if __name__ == "__main__":
    name, *rest = sys.argv[1:]
    flow = FLOWS[rest[0] if rest else "profiles"]
    parameters = json.loads(rest[1]) if len(rest) > 1 else None
    flow.serve(name=name, parameters=parameters, limit=1, print_starting_message=False)
