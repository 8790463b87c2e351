"""The layers stay apart: reflexio_api, core and gate never import Prefect (DESIGN.md)."""

import subprocess
import sys

import pytest

PACKAGES = {
    "reflexio_api": "reflexio_api, reflexio_api.paging",
    "gate": "gate, gate.evaluate",
    "core": "core.approval, core.backup, core.kinds, core.listing, core.live, core.rollback, "
    "core.sinks, core.state, core.stall, core.outcome, core.touched, core.erasures, "
    "core.restore_plan, core.restore_inputs, core.backup_store, core.retention, "
    "core.check_record, core.check_undo",
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_imports_no_prefect(package: str) -> None:
    code = f"import sys; import {PACKAGES[package]}; sys.exit('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
