"""Real-browser check of the local Prefect UI: custom run from the form -> gate report
artifact; a run paused for approval on a gate WARN, rejected and approved from its Resume form.

Starts, each on a free loopback port and torn down at the end:

1. ``prefect server start`` (API + UI) with PREFECT_HOME in a temp dir, analytics off;
2. the local stack (real Reflexio server + stand-in LLM), seeded with chat and email;
3. the deployment ``profile-regeneration/ui-check`` served in a subprocess;

then drives headless Debian Chromium through Selenium (never downloads a browser/driver):
/deployments -> the deployment -> Run -> Custom run -> fill ``reflexio_url`` and switch on
``dry_run`` in the parameters form -> Submit; waits (bounded) for the flow run to finish,
then opens the flow run's Artifacts tab and the artifact page and checks the gate report
text is shown. Then two runs with a gate policy that warns and on_warn=ask: each pauses, the
browser opens it, clicks Resume, sees the gate report in the form and answers: reject (first
without a reason, which Prefect refuses, then with one: nothing is upgraded) and approve (the
run upgrades; the summary artifact names who and why). Screenshots of every step go to
--shots (default: a temp dir) and their paths are printed. Exit 0 on success; otherwise
exit 1 with "FAILED at step '<step>': ...".

    python scripts/ui_check.py [--shots DIR] [--timeout 120] [--hold]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLOW_NAME = "profile-regeneration"
DEPLOYMENT = "ui-check"

# prefect.serve(deployment) rather than flow.serve(): a served deployment starts
# `python -m prefect.engine`, which imports the entrypoint as a module, as a worker does.
SERVE_CODE = f"""
from prefect import serve
from prefect.deployments.runner import EntrypointType
from flows.profile_regeneration import profile_regeneration
serve(profile_regeneration.to_deployment(
    name={DEPLOYMENT!r}, entrypoint_type=EntrypointType.MODULE_PATH
))
"""


class StepFailed(RuntimeError):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"FAILED at step '{step}': {message}")
        self.step = step


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Call ``check`` until it returns something truthy; StepFailed after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last = exc
        time.sleep(interval)
    extra = f" (last error: {last!r})" if last else ""
    raise StepFailed(what, f"not done within {timeout:g} s{extra}")


class Processes:
    """Subprocesses started here, each in its own process group, stopped in reverse order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append((name, proc))
        return proc

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


# --------------------------------------------------------------------------- browser


def make_driver(profile_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        f"--user-data-dir={profile_dir}",
    ):
        options.add_argument(arg)
    # Explicit driver path: Selenium Manager (which would download one) is never consulted.
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    return driver


class Browser:
    def __init__(self, driver, shots: Path, timeout: float) -> None:
        self.driver = driver
        self.shots = shots
        self.timeout = timeout
        self.count = 0

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.shots / f"{self.count:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        print(f"screenshot: {path}", flush=True)
        return path

    def body_text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def wait_text(self, step: str, *texts: str, timeout: float | None = None) -> None:
        wait_until(
            step,
            lambda: all(t in self.body_text() for t in texts),
            timeout or self.timeout,
        )

    def find(self, step: str, xpath: str, timeout: float | None = None):
        from selenium.webdriver.common.by import By

        def visible():
            for el in self.driver.find_elements(By.XPATH, xpath):
                if el.is_displayed():
                    return el
            return None

        return wait_until(step, visible, timeout or self.timeout)

    def click(self, step: str, xpath: str, timeout: float | None = None):
        el = self.find(step, xpath, timeout)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        try:
            el.click()
        except Exception:
            self.driver.execute_script("arguments[0].click();", el)
        return el


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=Path, help="screenshot folder (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=120, help="bound of every wait (s)")
    parser.add_argument(
        "--hold", action="store_true", help="start everything, print URLs, wait for Ctrl-C"
    )
    parser.add_argument(
        "--reflexio-url",
        help="a running, seeded Reflexio server to use (its rows are upgraded) instead of "
        "starting and seeding a local stack",
    )
    args = parser.parse_args()

    started = time.monotonic()
    # SIGTERM (e.g. a pytest timeout) unwinds through the finally below like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="ui-check-"))
    shots = args.shots or work / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir()
    procs = Processes(logs)
    from local_stack.prefect_server import PrefectServer, prefect_env

    prefect_server: PrefectServer | None = None
    stack = None
    driver = None
    step = "setup"
    print(f"work dir: {work}  (process logs in {logs})", flush=True)

    try:
        # 1. Prefect server (API + UI).
        step = "start prefect server"
        prefect_server = PrefectServer(work, startup_timeout_s=args.timeout).start()
        ui, api, home = prefect_server.ui_url, prefect_server.api_url, prefect_server.home
        print(f"prefect server: {ui}", flush=True)

        # 2. Local stack, seeded (or the server given).
        step = "start and seed the local stack"
        if args.reflexio_url:
            reflexio_url = args.reflexio_url
        else:
            from local_stack.seed import seed
            from local_stack.stack import LocalStack

            stack = LocalStack(state_dir=work / "reflexio").start()
            seed(stack.url, sources=("chat", "email"))
            reflexio_url = stack.url
        print(f"reflexio: {reflexio_url}", flush=True)

        # 3. The deployment, served.
        step = "serve the deployment"
        env = prefect_env(home, api)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PREFECT_RUNNER_POLL_FREQUENCY"] = "2"  # pick up each run in 2 s, not 10
        serve = procs.start("serve", [sys.executable, "-c", SERVE_CODE], env)

        def deployment_id() -> str | None:
            if serve.poll() is not None:
                raise StepFailed(step, f"exited {serve.returncode}:\n{procs.tail('serve')}")
            r = httpx.get(f"{api}/deployments/name/{FLOW_NAME}/{DEPLOYMENT}", timeout=5)
            return r.json()["id"] if r.status_code == 200 else None

        dep_id = wait_until(step, deployment_id, args.timeout)
        print(f"deployment: {FLOW_NAME}/{DEPLOYMENT} ({dep_id})", flush=True)

        if args.hold:
            print("holding; Ctrl-C to stop", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1)
            return 0

        # 4. The browser.
        step = "start chromium"
        driver = make_driver(work / "chromium-profile")
        b = Browser(driver, shots, args.timeout)

        step = "open /deployments"
        driver.get(f"{ui}/deployments")
        b.wait_text(step, DEPLOYMENT)
        b.shot("deployments")

        step = "open the deployment"
        b.click(step, f"//a[normalize-space(.)='{DEPLOYMENT}']")
        wait_until(step, lambda: dep_id in driver.current_url, args.timeout)
        b.wait_text(step, DEPLOYMENT, "Run")
        b.shot("deployment")

        step = "Run -> Custom run"
        b.click(step, "//button[normalize-space(.)='Run']")
        b.click(
            step,
            "//button[contains(@class, 'p-overflow-menu-item')"
            " and normalize-space(.)='Custom run']",
        )
        b.wait_text(step, "reflexio_url", "dry_run", "gate_policy")
        b.shot("custom-run-form")

        step = "fill the parameters form"
        fill_form(b, step, reflexio_url)
        b.shot("custom-run-filled")

        step = "submit the custom run"
        before = set(flow_run_ids(api, dep_id))
        for attempt in (1, 2):
            b.click(step, "//button[normalize-space(.)='Submit']")
            try:
                run_id = wait_until(
                    step, lambda: next(iter(set(flow_run_ids(api, dep_id)) - before), None), 30
                )
                break
            except StepFailed:
                # Seen once in CI: the UI answered "Oops. Something went wrong." and created
                # no run; the form stays filled, so the operator's next move is Submit again.
                if attempt == 2:
                    raise
                b.shot("submit-again")
                print("no flow run 30 s after Submit; submitting again", flush=True)
        print(f"flow run: {run_id}", flush=True)
        b.shot("submitted")

        step = "check the run's parameters came from the form"
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=5).json()
        params = run["parameters"]
        if params.get("reflexio_url") != reflexio_url or params.get("dry_run") is not True:
            raise StepFailed(step, f"run parameters are {run['parameters']!r}")

        step = "wait for the flow run to finish"
        state = wait_until(step, lambda: ended(api, run_id), max(args.timeout, 240), interval=2)
        print(f"flow run state: {state['type']} {state.get('message') or ''}", flush=True)
        driver.get(f"{ui}/runs/flow-run/{run_id}")
        b.wait_text(step, state["name"])
        b.shot("flow-run")
        if state["type"] != "COMPLETED":
            raise StepFailed(step, f"run ended {state['type']}: {state.get('message')}")

        step = "see the gate report artifact"
        key = gate_report_key(reflexio_url)
        # The innermost element reading "Artifacts" (the tab strip under the run graph).
        b.click(
            step, "//*[normalize-space(.)='Artifacts' and not(*[normalize-space(.)='Artifacts'])]"
        )
        # The tab lists the flow-run-level artifacts (the summary); the gate report was
        # created by the gate task, so it is checked on its own page below.
        b.wait_text(step, "MARKDOWN")
        b.shot("flow-run-artifacts")
        driver.get(f"{ui}/artifacts/key/{key}")
        b.wait_text(step, key, "Gate")
        b.shot("gate-report-key")
        # The key page lists versions; the newest version's link opens the rendered report.
        b.click(step, "//a[contains(@href, '/artifacts/artifact/')]")
        b.wait_text(step, "Gate", "retention")
        b.shot("gate-report-artifact")
        print(f"OK: custom run from the form -> {state['type']}, artifact {key} shown")

        step = "reject a run paused for approval"
        backups = work / "backups"
        answer_approval(b, api, ui, dep_id, reflexio_url, backups, approve=False)
        step = "approve a run paused for approval"
        answer_approval(b, api, ui, dep_id, reflexio_url, backups, approve=True)
        step = "see who approved in the run summary"
        driver.get(f"{ui}/artifacts/key/{summary_key(reflexio_url)}")
        b.click(step, "//a[contains(@href, '/artifacts/artifact/')]")
        b.wait_text(step, "approval: Approved by alice")
        b.shot("approved-summary")
        print("OK: paused on WARN; rejected -> not upgraded, approved -> upgraded")
        print(f"wall time: {time.monotonic() - started:.0f} s")
        return 0
    except StepFailed as exc:
        print(exc, file=sys.stderr)
    except Exception as exc:
        print(f"FAILED at step '{step}': {exc!r}", file=sys.stderr)
    finally:
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.save_screenshot(str(shots / "zz-last.png"))
            with contextlib.suppress(Exception):
                driver.quit()
        procs.stop_all()
        if prefect_server is not None:
            prefect_server.stop()
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.stop()
        print(f"elapsed: {time.monotonic() - started:.0f} s", flush=True)
    if prefect_server is not None:
        print(
            f"--- last lines of the prefect server's log ---\n{prefect_server.tail()}",
            file=sys.stderr,
        )
    print(f"--- last lines of serve.log ---\n{procs.tail('serve')}", file=sys.stderr)
    return 1


FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def gate_report_key(url: str) -> str:
    from core.identity import server_slug

    return f"profile-regen-{server_slug(url)}-gate-report"


def summary_key(url: str) -> str:
    from core.identity import server_slug

    return f"profile-regen-{server_slug(url)}-summary"


def flow_run_ids(api: str, dep_id: str) -> list[str]:
    r = httpx.post(
        f"{api}/flow_runs/filter",
        json={"deployments": {"id": {"any_": [dep_id]}}, "limit": 50},
        timeout=5,
    )
    r.raise_for_status()
    return [run["id"] for run in r.json()]


def form_property(label: str) -> str:
    """XPath of the innermost schema-form property whose label is ``label``."""
    return (
        f"//span[contains(@class, 'schema-form-property__label') and normalize-space(.)="
        f"'{label}']/ancestor::div[contains(concat(' ', @class, ' '), ' schema-form-property ')][1]"
    )


def fill_form(b: Browser, step: str, url: str) -> None:
    """In the rendered form (one field per parameter): reflexio_url := ``url`` (str branch),
    dry_run := on."""
    from selenium.webdriver.common.keys import Keys

    prop = form_property("reflexio_url (Optional)")
    # reflexio_url is `str | None`: the form shows a str/None switch, None selected.
    b.click(step, f"{prop}//button[normalize-space(.)='str']")
    field = b.find(step, f"{prop}//*[self::input or self::textarea]")
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(url)
    wait_until(step, lambda: field.get_attribute("value") == url, 10)

    switch = b.find(step, f"{form_property('dry_run (Optional)')}//*[@role='switch']")
    if switch.get_attribute("aria-checked") != "true":
        b.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", switch)
        switch.click()
    wait_until(step, lambda: switch.get_attribute("aria-checked") == "true", 10)


WARN_POLICY = {"min_chars": 2000, "hygiene_fail_share": 1.0}
"""Every candidate row is 'too short': the gate warns, and no share of such rows fails."""


def flow_run_state(api: str, run_id: str) -> dict:
    return httpx.get(f"{api}/flow_runs/{run_id}", timeout=5).json()["state"]


def ended(api: str, run_id: str, also: str = "") -> dict | None:
    """The run's state once it is final (or of type ``also``); None before."""
    state = flow_run_state(api, run_id)
    return state if state["type"] in FINAL or state["type"] == also else None


def row_ids(url: str) -> dict[str, set[str]]:
    """Profile ids per status on the Reflexio server."""
    from reflexio_api import ReflexioClient, ReflexioSettings

    with ReflexioClient(ReflexioSettings(url=url)) as client:
        return {
            status: {p.profile_id for p in client.list_profiles(status)}
            for status in ("current", "pending")
        }


def answer_approval(
    b: Browser,
    api: str,
    ui: str,
    dep_id: str,
    url: str,
    backup_dir: Path,
    approve: bool,
    timeout: float = 240,
) -> None:
    """Start a run that pauses on WARN, answer its Resume form, check what it did."""
    what = "approve" if approve else "reject"
    before = row_ids(url)
    params = {
        "reflexio_url": url,
        "backup_dir": str(backup_dir),
        "gate_policy": WARN_POLICY,
        "on_warn": "ask",
        "approval_timeout_s": 900,
    }
    r = httpx.post(
        f"{api}/deployments/{dep_id}/create_flow_run",
        json={"parameters": params},
        timeout=10,
    )
    r.raise_for_status()
    run_id = r.json()["id"]

    step = f"{what}: wait for the pause"
    state = wait_until(step, lambda: ended(api, run_id, also="PAUSED"), timeout, interval=1)
    if state["type"] != "PAUSED":
        raise StepFailed(step, f"the run ended {state['type']} without pausing: {state['message']}")
    step = f"{what}: open the Resume form"
    b.driver.get(f"{ui}/runs/flow-run/{run_id}")
    b.wait_text(step, "Paused")
    b.click(step, "//button[normalize-space(.)='Resume']")
    b.wait_text(step, "Resume Flow Run", "Upgrade profiles on", "Evaluation gate (profiles): WARN")
    b.shot(f"{what}-resume-form")

    step = f"{what}: fill and submit the form"
    b.find(step, f"{form_property('Decided By')}//textarea").send_keys(
        "alice" if approve else "bob"
    )
    submit = "//div[contains(@class, 'p-modal__footer')]//button[normalize-space(.)='Submit']"
    if approve:
        switch = b.find(step, f"{form_property('Approve (Optional)')}//*[@role='switch']")
        switch.click()
        wait_until(step, lambda: switch.get_attribute("aria-checked") == "true", 10)
    else:  # a rejection without a reason is refused, and the run stays paused
        b.click(step, submit)
        b.wait_text(step, "Validation failed for field 'reason'")
        b.shot("reject-needs-a-reason")
        if flow_run_state(api, run_id)["type"] != "PAUSED":
            raise StepFailed(step, "a rejection without a reason resumed the run")
    reason = "warnings expected" if approve else "rows got too short"
    b.find(step, f"{form_property('Reason (Optional)')}//textarea").send_keys(reason)
    b.shot(f"{what}-filled")
    b.click(step, submit)

    step = f"{what}: wait for the run to finish"
    state = wait_until(step, lambda: ended(api, run_id), timeout, interval=1)
    b.driver.get(f"{ui}/runs/flow-run/{run_id}")
    b.wait_text(step, state["name"])
    b.shot(f"{what}-done")
    print(f"{what}: {state['type']} {state['message']}", flush=True)
    after = row_ids(url)
    if approve:
        upgraded = after["current"].isdisjoint(before["current"]) and not after["pending"]
        if state["type"] != "COMPLETED" or not upgraded:
            raise StepFailed(step, f"approved run not upgraded: {state['message']}")
    elif (
        state["type"] != "FAILED"
        or not state["message"].startswith("Not upgraded: Rejected by bob: rows got too short.")
        or after != {"current": before["current"], "pending": set()}
    ):
        raise StepFailed(step, f"rejected run changed CURRENT or said {state['message']!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    code = main()
    sys.exit(code)
