"""A TCP load balancer for the many-host deployment test, as a balancer in front of the replicas of a code-server
Deployment: it listens on one address and hands each new connection to the least loaded backend (the one whose host
runs the fewest processes, `ip netns pids`; ties in turn), piping bytes both ways until either side closes. One line
per connection on stdout names the backend.

    python -m oneroster_pipeline_tests.deploy.tcp_balancer LISTEN_HOST:PORT BACKEND_HOST:PORT@NETNS [...]

Dagster's gRPC client opens a channel per call, so each call is one connection here. A StartRun leaves a run worker
on the backend that took it, so the next run goes to the other one; most calls (server ids, snapshots) start nothing.
Plain round robin does not spread runs: the calls between two StartRuns are as often even as odd."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys

CHUNK = 1 << 16


def backend(text: str) -> tuple[str, int, str]:
    """HOST:PORT@NETNS -> (host, port, netns)."""
    where, _, netns = text.partition("@")
    host, _, port = where.rpartition(":")
    return host, int(port), netns


def processes_on(netns: str) -> int:
    listed = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    return len(listed.stdout.split())


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def serve(listen: tuple[str, int, str], backends: list[tuple[str, int, str]]) -> None:
    turn = itertools.count()

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        loads = [processes_on(netns) for _, _, netns in backends]
        least = [b for b, load in zip(backends, loads) if load == min(loads)]
        host, port, _ = least[next(turn) % len(least)]
        print(f"connection -> {host}:{port} (processes {loads})", flush=True)
        try:
            backend_reader, backend_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        except (OSError, TimeoutError):
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, backend_writer), pipe(backend_reader, client_writer))

    server = await asyncio.start_server(relay, *listen[:2])
    print(f"listening on {listen[0]}:{listen[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(backend(sys.argv[1]), [backend(a) for a in sys.argv[2:]]))
