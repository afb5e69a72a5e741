#!/usr/bin/env python3
"""Opens COUNT keep-alive connections to HOST:PORT, sends one GET PATH (with
the header line HEADER, if any) on each and reads its answer, then holds them
all open, idle, until SIGTERM.

For scripts/bench's 10,000-connection row: the idle share of the
connections. Prints one line when all are open:

    READY opened=N ok=K failed=F statuses=200:K,...

and one when told to stop, saying how many the server had closed meanwhile:

    DONE open=N closed=M
"""

import asyncio
import signal
import sys
from collections import Counter

BATCH = 500


async def one(host, port, request, statuses):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
    except (OSError, asyncio.TimeoutError):
        statuses["connect_failed"] += 1
        return None
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ")[1]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length:
            await asyncio.wait_for(reader.readexactly(length), 30)
        statuses[status] += 1
        return reader, writer
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, IndexError, ValueError):
        statuses["failed"] += 1
        writer.close()
        return None


async def main():
    host, port, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    header = sys.argv[5] if len(sys.argv) > 5 else ""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if header:
        request += header + "\r\n"
    request = (request + "\r\n").encode("latin-1")
    statuses = Counter()
    held = []
    for start in range(0, count, BATCH):
        batch = [one(host, port, request, statuses) for _ in range(min(BATCH, count - start))]
        held.extend(conn for conn in await asyncio.gather(*batch) if conn is not None)
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    shown = ",".join(f"{status}:{n}" for status, n in sorted(statuses.items()))
    print(f"READY opened={len(held)} ok={ok} failed={count - ok} statuses={shown}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    # A connection the server closed reads as EOF.
    await asyncio.sleep(0)
    closed = sum(1 for reader, _ in held if reader.at_eof())
    print(f"DONE open={len(held) - closed} closed={closed}", flush=True)
    for _, writer in held:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
