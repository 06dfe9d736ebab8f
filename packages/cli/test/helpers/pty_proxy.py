"""Runs a command on a new pseudo-terminal, for tests that need a real terminal (node-pty needs a
native build; Python's pty module is in every CPython on Linux and macOS).

Bytes read from our standard input are typed into the terminal (b"\\x03" is Ctrl-C, b"\\x04"
Ctrl-D); what the terminal shows is copied to our standard output. Exits with the command's exit
status (128 + N when signal N ended it), or with 124 when it still runs after TIMEOUT seconds (it
is then killed), so a test never hangs on it.

usage: python3 pty_proxy.py TIMEOUT COMMAND [ARG...]
"""
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time


def main() -> int:
    timeout = float(sys.argv[1])
    command = sys.argv[2:]
    pid, terminal = pty.fork()
    if pid == 0:
        try:
            # Wide enough that line editing never wraps, so the output stays easy to read.
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    deadline = time.monotonic() + timeout
    inputs = [terminal, 0]
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            sys.stderr.write(f"pty_proxy: {command[0]} still running after {timeout} s, killed\n")
            return 124
        readable, _, _ = select.select(inputs, [], [], left)
        if terminal in readable:
            try:
                shown = os.read(terminal, 65536)
            except OSError:  # EIO once the command and its children have closed the terminal
                shown = b""
            if not shown:
                break
            sys.stdout.buffer.write(shown)
            sys.stdout.buffer.flush()
        if 0 in readable:
            typed = os.read(0, 65536)
            if typed:
                os.write(terminal, typed)
            else:
                inputs.remove(0)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
