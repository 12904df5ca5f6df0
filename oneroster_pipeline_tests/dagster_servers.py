"""For the tests that start Dagster's servers (UI, deployment): a GraphQL query to the webserver, and stopping a
process group with everything it started."""

import os
import signal
import subprocess

import psutil
import requests


def post_graphql(base_url: str, query: str, variables: dict | None = None) -> dict:
    """The query's `data`; fails on an HTTP error or any GraphQL error."""
    response = requests.post(f"{base_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), f"GraphQL errors: {body['errors']}"
    return body["data"]


def stop_process_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM `process`'s group, wait up to `grace` seconds, SIGKILL what is left of the group, then kill its
    children that started a session of their own (they escaped the group)."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            if sig == signal.SIGKILL:
                raise
    _, alive = psutil.wait_procs(descendants, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
