#!/usr/bin/env python3
"""An ssh ProxyCommand that adds network latency: relays stdin/stdout to HOST:PORT, holding
every chunk DELAY_MS/2 milliseconds in each direction (so a round trip costs DELAY_MS more),
in order. For benchmarks on loopback, where the kernel here has no netem qdisc.

Usage (ssh_config): ProxyCommand python3 delay-relay.py DELAY_MS %h %p
"""
import asyncio
import sys
import time


async def pump(reader, write, drain, delay):
    queue = asyncio.Queue()

    async def sender():
        while True:
            due, data = await queue.get()
            if data is None:
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            write(data)
            await drain()

    task = asyncio.create_task(sender())
    while True:
        data = await reader.read(65536)
        await queue.put((time.monotonic() + delay, data or None))
        if not data:
            break
    await task


async def main():
    delay = float(sys.argv[1]) / 2000.0
    host, port = sys.argv[2], int(sys.argv[3])
    loop = asyncio.get_running_loop()
    r_remote, w_remote = await asyncio.open_connection(host, port)
    r_stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(r_stdin), sys.stdin.buffer)
    w_transport, w_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout.buffer
    )
    w_stdout = asyncio.StreamWriter(w_transport, w_protocol, None, loop)

    def close_remote_write():
        if w_remote.can_write_eof():
            w_remote.write_eof()

    async def up():
        await pump(r_stdin, w_remote.write, w_remote.drain, delay)
        close_remote_write()

    async def down():
        await pump(r_remote, w_stdout.write, w_stdout.drain, delay)

    done, _ = await asyncio.wait(
        [asyncio.create_task(up()), asyncio.create_task(down())],
        return_when=asyncio.FIRST_COMPLETED,
    )
    # The server closed: nothing more can come back.
    w_stdout.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass
