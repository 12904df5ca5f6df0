"""Secrets a hostile server echoes never leave the process (issue 24, item 2): each case runs
`dagster job execute ... -j student_sync` against a loopback server after a good sync, then every file under
DAGSTER_HOME, the DuckDB file (its bytes and every text column), the captured output and the alert webhook's
messages are searched for the client secret, the issued tokens and their encoded forms."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import duckdb

from oneroster_pipeline_tests.defs.test_automation import webhook  # noqa: F401  (the receiver fixture)

from .server import CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, HostileProvider

ROOT = Path(__file__).resolve().parents[2]
CRLF_TOKEN = "tok-CRLF-5e4d3c2b1a\r\nX-Injected: yes"


def echo_authorization_in_an_html_title(seen, handler):
    if not seen.path.endswith("/students"):
        return False
    title = f"Internal error: request had Authorization: {seen.headers.get('Authorization')}"
    handler.send_body(500, f"<html><head><title>{title}</title></head></html>".encode(), "text/html")
    return True


def echo_a_cut_token_in_a_long_title(seen, handler):
    if not seen.path.endswith("/students"):
        return False
    token = seen.headers.get("Authorization", "").removeprefix("Bearer ")
    title = "x" * 185 + " " + token  # the error keeps 200 characters of a title: the token is cut in the middle
    handler.send_body(500, f"<title>{title}</title>".encode(), "text/html")
    return True


def echo_secrets_in_a_json_error(seen, handler):
    if not seen.path.endswith("/students"):
        return False
    handler.send_json(500, {"imsx_codeMajor": "failure", "imsx_description":
                            f"client {CLIENT_ID} with secret {CLIENT_SECRET} sent {seen.headers.get('Authorization')}"})
    return True


def echo_the_token_form_body(seen, handler):
    if seen.path != TOKEN_PATH:
        return False
    said = f"{seen.body.decode()} {seen.headers.get('Authorization', '')}"
    handler.send_json(401, {"error": "invalid_client", "error_description": f"refused: {said}"})
    return True


def issue_a_token_with_crlf(seen, handler):
    if seen.path != TOKEN_PATH:
        return False
    handler.send_json(200, {"access_token": CRLF_TOKEN, "token_type": "bearer", "expires_in": 3600})
    return True


CASES = [echo_authorization_in_an_html_title, echo_a_cut_token_in_a_long_title, echo_secrets_in_a_json_error,
         echo_the_token_form_body, issue_a_token_with_crlf]


def secret_forms(provider: HostileProvider) -> list[str]:
    """Every form in which a secret of this district could show: the client secret (plain, URL-encoded, as HTTP
    Basic), every token the server issued, and a 12-character fragment of each."""
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    values = [CLIENT_SECRET, quote(CLIENT_SECRET, safe=""), quote_plus(CLIENT_SECRET), basic,
              CRLF_TOKEN.split("\r")[0], *provider.tokens]
    return values + [v[-12:] for v in values] + [v[:12] for v in values if not v.startswith("tok-")]


def leaks(texts: dict[str, bytes], forms: list[str]) -> list[str]:
    return [f"{where}: {form!r}" for where, data in texts.items() for form in forms if form.encode() in data]


def duckdb_texts(database: Path) -> bytes:
    """Every text value of every table of the DuckDB file, one per line (the file's bytes may be compressed)."""
    lines = []
    with duckdb.connect(str(database), read_only=True) as con:
        columns = con.execute("SELECT table_name, column_name FROM information_schema.columns WHERE data_type = "
                              "'VARCHAR' AND table_schema = 'main'").fetchall()
        for table, column in columns:
            lines += [str(v) for (v,) in con.execute(f'SELECT "{column}" FROM "{table}"').fetchall()]
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def test_secrets_a_server_echoes_reach_no_log_table_event_log_or_webhook(tmp_path, webhook):  # noqa: F811
    url, received = webhook
    home, database = tmp_path / "dagster_home", tmp_path / "warehouse" / "oneroster.duckdb"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    outputs: dict[str, bytes] = {}
    with HostileProvider() as provider:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ONEROSTER_")}, **provider.env(),
               "DAGSTER_HOME": str(home), "ONEROSTER_DUCKDB_PATH": str(database), "ONEROSTER_ALERT_WEBHOOK_URL": url}

        def run(job: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "oneroster_pipeline.definitions",
                 "-j", job], check=False, cwd=tmp_path, env=env, capture_output=True, timeout=300)

        good = run("full_sync")
        assert good.returncode == 0, good.stderr.decode()[-3000:]
        for case in CASES:
            provider.behaviour = case
            done = run("student_sync")
            assert done.returncode != 0, case.__name__
            outputs[case.__name__] = done.stdout + done.stderr
        forms = secret_forms(provider)
    assert len(provider.tokens) >= 2  # the good run and the echo cases were issued tokens

    texts = {f"output of {name}": data for name, data in outputs.items()}
    texts.update({str(path.relative_to(home)): path.read_bytes() for path in home.rglob("*") if path.is_file()})
    texts["the DuckDB file"] = database.read_bytes()
    texts["the DuckDB tables"] = duckdb_texts(database)
    texts["the webhook"] = "\n".join(m["text"] for m in received).encode()
    assert not leaks(texts, forms)

    # the failures were recorded, and say what happened without the secret
    with duckdb.connect(str(database), read_only=True) as con:
        failed = con.execute("SELECT message FROM sync_runs WHERE outcome = 'failed' ORDER BY started_at").fetchall()
    assert len(failed) == len(CASES)
    said = [m for (m,) in failed]
    assert "HTTP 500" in said[0] and "***" in said[0]
    assert "OAuth2 token request failed" in said[3] and "***" in said[3]
    assert "characters an HTTP header cannot carry" in said[4]
