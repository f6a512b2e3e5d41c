#!/usr/bin/env python3
"""Drives a command on a pseudo-terminal, as a person at a terminal would.

Usage: expect.py TIMEOUT STEPS_JSON -- COMMAND [ARGS...]
STEPS_JSON is a list of [pattern, reply] pairs: wait until the output so far matches the
regular expression `pattern` (searched in the output after the previous match), then type
`reply`. After the last step, the output is read until the command exits. Everything the
command printed goes to stdout; the exit status is the command's (124 on timeout, with the
output so far). EXPECT_ROWS in the environment: the terminal's height (80 columns).
"""
import fcntl
import json
import os
import pty
import re
import select
import struct
import sys
import termios
import time


def main():
    timeout = float(sys.argv[1])
    steps = json.loads(sys.argv[2])
    argv = sys.argv[sys.argv.index("--") + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        rows = int(os.environ.get("EXPECT_ROWS", "24"))
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 80, 0, 0))
        os.execvp(argv[0], argv)
    deadline = time.monotonic() + timeout
    out = b""
    pos = 0

    def read_some():
        nonlocal out
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return False
            if not data:
                return False
            out += data
        return True

    for pattern, reply in steps:
        rx = re.compile(pattern.encode())
        while True:
            m = rx.search(out, pos)
            if m:
                pos = m.end()
                break
            if time.monotonic() > deadline or not read_some():
                sys.stdout.write(out.decode(errors="replace"))
                sys.stdout.write(f"\n[expect.py: timed out or ended waiting for {pattern!r}]\n")
                sys.exit(124)
        time.sleep(0.2)
        os.write(fd, reply.encode())
    while time.monotonic() < deadline:
        if not read_some():
            break
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(out.decode(errors="replace"))
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
