"""What a webhook send costs with each HTTP client the dispatcher could use (issue 16).

POSTs REQUESTS JSON bodies of an SMS's size, CONCURRENCY at a time, to a keep-alive
HTTP/1.1 sink on loopback in its own process, with:
  httpx-threads  httpx.Client shared by a thread pool (the dispatcher before issue 16)
  httpx-async    httpx.AsyncClient on one asyncio loop
  aiohttp        aiohttp.ClientSession on one asyncio loop (the dispatcher's send loop)
and prints requests per second and this process's CPU per request, three runs each.

    python bench/http_clients.py
    python bench/http_clients.py --requests 8000 --concurrency 8 --clients aiohttp httpx-threads
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import httpx

BODY = json.dumps({"id": "00000000-0000-4000-8000-000000000000", "channel": "sms", "to": "+33612345601",
                   "text": "BALISE ALERTE: " + "x" * 140, "language": "fr"}).encode()
REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"id\": \"ref\"}"


def sink(listener: socket.socket) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                writer.write(REPLY)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def serve() -> None:
        server = await asyncio.start_server(handle, sock=listener)
        await server.serve_forever()

    asyncio.run(serve())


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def httpx_threads(url: str, requests: int, concurrency: int) -> None:
    with httpx.Client(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)) as client:
        def one(i: int) -> None:
            client.post(url, content=BODY, headers={"Idempotency-Key": str(i)}).json()

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(requests)))


async def httpx_async(url: str, requests: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                (await client.post(url, content=BODY, headers={"Idempotency-Key": str(i)})).json()

        await asyncio.gather(*(one(i) for i in range(requests)))


async def aiohttp_session(url: str, requests: int, concurrency: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                async with session.post(url, data=BODY, headers={"Idempotency-Key": str(i)}) as response:
                    json.loads(await response.read())

        await asyncio.gather(*(one(i) for i in range(requests)))


CLIENTS = {
    "httpx-threads": httpx_threads,
    "httpx-async": lambda *a: asyncio.run(httpx_async(*a)),
    "aiohttp": lambda *a: asyncio.run(aiohttp_session(*a)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS))
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1 or args.runs < 1:
        parser.error("--requests, --concurrency and --runs must be positive")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    server = multiprocessing.Process(target=sink, args=(listener,), daemon=True)
    server.start()
    print(f"{args.requests} POSTs, {args.concurrency} at a time, sink on loopback; cpus={os.cpu_count()}"
          f" load={os.getloadavg()[0]:.2f}")
    try:
        for run in range(1, args.runs + 1):
            for name in args.clients:
                started, used = time.perf_counter(), cpu()
                CLIENTS[name](url, args.requests, args.concurrency)
                seconds, used = time.perf_counter() - started, cpu() - used
                print(f"run {run}  {name:14} {args.requests / seconds:8.0f} requests/s"
                      f"  {used / args.requests * 1000:.2f} ms of CPU per request")
    finally:
        server.kill()


if __name__ == "__main__":
    main()
