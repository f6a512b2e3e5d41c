#!/usr/bin/env python3
"""A hand-written rsync protocol client, as an attacker on a VPS would write one.

It runs a remote rsync server through ssh with the command it is given (the forced command of
the key decides what actually runs), speaks protocol 29 (no compatibility flags, no checksum
negotiation, plain input), and sends the filter rules it is given, raw: what a stock rsync
client only sends when its own options call for it, and then only rules it parsed itself. A
`merge FILE` rule makes the server open FILE and parse its lines as rules; lines it cannot
parse come back in its error messages. Then it reads everything the server says until the
server closes or 10 s pass, and prints one JSON object:

  {"server_protocol": N or null, "text": "every message and data byte, lossy UTF-8",
   "stderr": "ssh's and the forced command's stderr", "exit": N}

Usage: rsync_raw_client.py SSH_DESTINATION REMOTE_COMMAND [--ssh-opt OPT]... [--rule RULE]...
Used by tests/it/attacks.rs, run on a lab VPS as root (python3 - ARGS < this file).
"""

import json
import select
import struct
import subprocess
import sys
import time

MPLEX_BASE = 7


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    dest, command = args[0], args[1]
    ssh_opts, rules = [], []
    rest = args[2:]
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--ssh-opt":
            ssh_opts += ["-o", value]
        elif flag == "--rule":
            rules.append(value)
        else:
            print(f"unknown argument {flag}", file=sys.stderr)
            return 2

    proc = subprocess.Popen(
        ["ssh", "-T", *ssh_opts, dest, command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out = b""
    deadline = time.monotonic() + 10

    def read_some() -> bool:
        nonlocal out
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            return False
        chunk = proc.stdout.read1(65536)
        if not chunk:
            return False
        out += chunk
        return True

    def need(n: int) -> bool:
        while len(out) < n:
            if not read_some():
                return False
        return True

    server_protocol = None
    try:
        proc.stdin.write(struct.pack("<i", 29))
        proc.stdin.flush()
        if need(8):  # the server's version, then its checksum seed
            server_protocol = struct.unpack("<i", out[:4])[0]
            out = out[8:]
            # The filter list: each rule as a length and its bytes, then 0.
            for rule in rules:
                data = rule.encode()
                proc.stdin.write(struct.pack("<i", len(data)) + data)
            proc.stdin.write(struct.pack("<i", 0))
            proc.stdin.flush()
    except BrokenPipeError:
        pass
    # Whatever the server says next, until it stops (it waits for us after the file list).
    while read_some():
        pass
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    while True:
        chunk = proc.stdout.read1(65536)
        if not chunk:
            break
        out += chunk
    stderr = proc.stderr.read().decode(errors="replace")

    # Demultiplex: 4-byte little-endian headers, tag (MPLEX_BASE + n) in the high byte.
    text, pos = [], 0
    while pos + 4 <= len(out):
        header = struct.unpack("<I", out[pos : pos + 4])[0]
        tag, length = (header >> 24) - MPLEX_BASE, header & 0xFFFFFF
        body = out[pos + 4 : pos + 4 + length]
        pos += 4 + length
        text.append(f"[{tag}] " + body.decode(errors="replace"))
    text.append(out[pos:].decode(errors="replace"))
    print(
        json.dumps(
            {
                "server_protocol": server_protocol,
                "text": "\n".join(text),
                "stderr": stderr,
                "exit": proc.returncode,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
