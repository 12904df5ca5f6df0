"""Tests of the deployment files (`deploy/`): Dagster's production pieces (Postgres storage, daemon, webserver,
gRPC code server, the run queue) started as real processes against a throwaway PostgreSQL server."""
