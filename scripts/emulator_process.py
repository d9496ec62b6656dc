"""Starting a moto server (stock or patched) on a free loopback port for the
emulator checks (check_emulator.py, check_emulator_extras.py)."""

import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(cmd, env=None):
    port = free_port()
    proc = subprocess.Popen(cmd + ["-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None:
                sys.exit(f"check_emulator: {cmd} exited")
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"check_emulator: {cmd} did not answer")
