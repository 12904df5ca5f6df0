"""`oneroster-demo-server`: run the demo OneRoster provider in the foreground, or export it as a CSV zip."""

from __future__ import annotations

import argparse
import threading

from oneroster_pipeline.demo.auth import AUTH_MODES
from oneroster_pipeline.demo.csv_export import export_csv
from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline.demo.personas import PERSONAS, QUIRKS
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings

_VERSIONS = {"1.1": ("1.1",), "1.2": ("1.2",), "both": ("1.1", "1.2")}


def build_parser() -> argparse.ArgumentParser:
    defaults = DemoSettings()
    p = argparse.ArgumentParser(prog="oneroster-demo-server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--students", type=int, default=50_000)
    p.add_argument("--schools", type=int, default=20)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--version", choices=sorted(_VERSIONS), default="both", help="OneRoster version(s) to serve")
    p.add_argument("--persona", choices=sorted(PERSONAS), default=defaults.persona,
                   help="wire behaviour of a real provider (see oneroster_pipeline/demo/personas.py)")
    p.add_argument("--quirk", action="append", choices=sorted(QUIRKS), default=[], metavar="QUIRK",
                   help="an extra quirk on top of the persona's (repeatable): " + ", ".join(sorted(QUIRKS)))
    p.add_argument("--auth", choices=AUTH_MODES, default=None,
                   help=f"default: the persona's ({defaults.auth} for spec, oauth1 for classlink)")
    p.add_argument("--client-id", default=defaults.client_id)
    p.add_argument("--client-secret", default=defaults.client_secret)
    p.add_argument("--bearer-token", default=defaults.bearer_token)
    p.add_argument("--token-lifetime", type=int, default=defaults.token_lifetime, help="seconds")
    p.add_argument("--page-cap", type=int, default=None, help="largest page the server returns")
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--rate-limit-every", type=int, default=0, help="answer every Nth API request with 429")
    p.add_argument("--retry-after", type=int, default=defaults.retry_after, help="Retry-After seconds on 429")
    p.add_argument("--error-5xx-every", type=int, default=0, help="answer every Nth API request with an HTML 503")
    p.add_argument("--id-namespace", default="", metavar="NAME",
                   help="serve every sourcedId rewritten under NAME (same people, names and identifiers)")
    p.add_argument("--export-csv", metavar="PATH", help="write the district as a OneRoster CSV zip and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    shape = DistrictShape(schools=args.schools, students=args.students, seed=args.seed)
    if args.export_csv:
        version = "1.1" if args.version == "both" else args.version
        print(f"wrote {export_csv(District(shape, args.id_namespace), args.export_csv, version)} (OneRoster {version} CSV)")
        return 0
    try:
        settings = DemoSettings(
            auth=args.auth or PERSONAS[args.persona].auth, client_id=args.client_id, client_secret=args.client_secret,
            bearer_token=args.bearer_token, token_lifetime=args.token_lifetime, page_cap=args.page_cap,
            latency_ms=args.latency_ms, rate_limit_every=args.rate_limit_every, retry_after=args.retry_after,
            error_5xx_every=args.error_5xx_every, versions=_VERSIONS[args.version], persona=args.persona,
            quirks=frozenset(args.quirk), id_namespace=args.id_namespace)
    except ValueError as err:  # e.g. conflicting quirks, or session_cookie without oauth2
        build_parser().error(str(err))
    with DemoProvider(shape, settings, host=args.host, port=args.port) as provider:
        print(f"OneRoster demo provider: {shape.students} students, {shape.schools} schools, seed {shape.seed}")
        quirks = ", ".join(sorted(provider.quirks)) or "none"
        print(f"  persona: {settings.persona} (quirks: {quirks})")
        for version in settings.versions:
            print(f"  {version} base URL: {provider.base_url(version)}")
        if settings.auth == "oauth2":
            print(f"  token URL:   {provider.token_url}  (client_credentials, {settings.client_id} / "
                  f"{settings.client_secret})")
        elif settings.auth == "oauth1":
            print(f"  OAuth 1.0a HMAC-SHA256 consumer key/secret: {settings.client_id} / {settings.client_secret}")
        elif settings.auth == "bearer":
            print(f"  bearer token: {settings.bearer_token}")
        print("Ctrl-C to stop.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
