"""The `http` section of `scripts/bench`: commands/s through `ledger serve` against the
in-process rate of the same commands, measured in the same run on the same backend.

The workload is the `commands` section's: capped transfer-ins by distinct users, each a request
+ account + pool transaction. Each run takes a fresh store: in-process, `Ledger.execute` one
command after the other; through HTTP, a real `ledger serve` process on a loopback port, one
command per `POST /v1/commands`, from one client (each waits for its answer: latency-bound) and
from CLIENTS clients at once (the server's threads share one write path). Both run the same
warm-up first, untimed. HTTP adds parsing, JSON, a loopback round trip and the server's thread
hand-off per command: the ratio says what the network service costs over the library.
Clients use the standard library's `http.client` with one kept-alive connection each.
"""

import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any

from ledger.application import Ledger
from ledger.bench.commands import (
    CAPPED,
    QUANTITY,
    UPPER_LIMIT_LARGE,
    WARMUP_COMMANDS,
    set_up_capped_asset,
)
from ledger.bench.core import Backend, BenchConfig, Figure, fresh_store, progress, rate, sampled
from ledger.commands import parse_command
from ledger.http.keys import KeyStore
from ledger.http.roles import Role

SECTION = "http"
CLIENTS = 4
STARTUP_SECONDS_MAX = 30
STOP_SECONDS_MAX = 10
CEILING_NAME = "in-process Ledger.execute, one by one (same run)"


def run(config: BenchConfig) -> list[Figure]:
    figures: list[Figure] = []
    for backend in config.backends:
        progress(f"http {backend}: in-process")
        in_process = sampled(config.runs, partial(_in_process_rate, backend, config))
        for clients in (1, CLIENTS):
            progress(f"http {backend}: {clients} HTTP client(s)")
            through_http = sampled(config.runs, partial(_http_rate, backend, config, clients))
            figures.append(
                Figure.judged(
                    section=SECTION,
                    name=f"capped transfer-ins via POST /v1/commands, {clients} client(s)",
                    backend=backend,
                    unit="cmds/s",
                    value=through_http,
                    ceiling_name=CEILING_NAME,
                    ceiling=in_process,
                    notes={"commands": config.commands, "clients": clients},
                )
            )
    return figures


def _in_process_rate(backend: Backend, config: BenchConfig) -> float:
    with fresh_store(backend, config) as url, Ledger(url) as ledger:
        set_up_capped_asset(ledger, upper_limit=UPPER_LIMIT_LARGE)
        for data in _transfers(WARMUP_COMMANDS, "warm"):
            ledger.execute(parse_command(data))
        commands = [parse_command(data) for data in _transfers(config.commands, "bench")]
        started = time.perf_counter()
        for command in commands:
            outcome = ledger.execute(command)
            assert outcome.is_accepted, outcome
        return rate(len(commands), time.perf_counter() - started)


def _http_rate(backend: Backend, config: BenchConfig, clients: int) -> float:
    with fresh_store(backend, config) as url:
        with Ledger(url) as ledger:
            set_up_capped_asset(ledger, upper_limit=UPPER_LIMIT_LARGE)
            key = KeyStore(ledger).create(Role.SERVICE, "bench").key
        with _serving(url) as port:
            _send(port, key, _transfers(WARMUP_COMMANDS, "warm"))
            bodies = _transfers(config.commands, "bench")
            failures: list[BaseException] = []

            def send(share: list[dict[str, Any]]) -> None:
                try:
                    _send(port, key, share)
                except BaseException as error:  # re-raised below, in the measuring thread
                    failures.append(error)

            shares = [bodies[n::clients] for n in range(clients)]
            threads = [threading.Thread(target=send, args=(share,)) for share in shares]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
        if failures:
            raise failures[0]
        return rate(len(bodies), elapsed)


def _send(port: int, key: str, bodies: list[dict[str, Any]]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    try:
        for body in bodies:
            connection.request("POST", "/v1/commands", json.dumps(body), headers)
            answer = connection.getresponse()
            text = answer.read()
            if answer.status != 200 or json.loads(text)["status"] != "accepted":
                raise RuntimeError(f"HTTP {answer.status}: {text[:500]!r}")
    finally:
        connection.close()


def _transfers(count: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "transfer_in",
            "request_id": f"{prefix}-t{number}",
            "user": f"{prefix}-u{number}",
            "account": "cross",
            "asset": CAPPED,
            "quantity": QUANTITY,
        }
        for number in range(count)
    ]


@contextmanager
def _serving(url: str) -> Iterator[int]:
    """`ledger serve` on a free loopback port, until it answers; stopped afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    command = [str(Path(sys.executable).with_name("ledger")), "serve", "--db", url]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            _wait_until_up(process, port, log)
            yield port
        finally:
            _stop(process)


def _stop(process: "subprocess.Popen[bytes]") -> None:
    process.terminate()
    try:
        process.wait(STOP_SECONDS_MAX)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_up(process: "subprocess.Popen[bytes]", port: int, log: IO[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS_MAX
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"ledger serve exited: {log.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"ledger serve did not listen within {STARTUP_SECONDS_MAX} s")
