"""A real local Redis Cluster for the tests: three masters, no replicas, each a child process.

Same redis-server binary as the embedded store (`channel.courier.embedded.redis_server_binary()`);
the cluster is created with the `redis-cli` shipped next to it. Each master keeps an append-only
file fsynced on every write in its own directory, so a master killed with SIGKILL and started
again on the same port and directory comes back with every write it acknowledged.
"""

from __future__ import annotations

import atexit
import contextlib
import random
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

from channel.courier.embedded import redis_server_binary

NODE_TIMEOUT_MS = 2000
START_TIMEOUT = 20.0


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free too (6.2 has no cluster-port)."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randrange(20000, 30000)
        if port not in chosen and _bindable(port) and _bindable(port + 10000):
            chosen.append(port)
    return chosen


@dataclass
class Node:
    port: int
    dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def config(self) -> str:
        return "\n".join(
            [
                f"port {self.port}",
                "bind 127.0.0.1",
                f"dir {self.dir}",
                "daemonize no",
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                f"cluster-node-timeout {NODE_TIMEOUT_MS}",
                # A dead master makes only its own slots unavailable, not the whole cluster.
                "cluster-require-full-coverage no",
                "appendonly yes",
                "appendfsync always",
                'save ""',
                "logfile redis.log",
                "",
            ]
        )

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "redis.conf").write_text(self.config())
        self.process = subprocess.Popen(
            [redis_server_binary(), str(self.dir / "redis.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} exited: {self.log_tail()}")
            with contextlib.suppress(redis.RedisError), self.client() as client:
                if client.ping():
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on {self.port} did not start: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "redis.log").read_text(errors="replace")[-800:]
        return ""


@dataclass
class LocalCluster:
    """Three (or more) masters on 127.0.0.1, slots split evenly, no replicas."""

    root: Path
    size: int = 3
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def start(self) -> None:
        ports = cluster_ports(self.size)
        self.nodes = [Node(port, self.root / str(port)) for port in ports]
        atexit.register(self.stop)  # even if the session is cut short before its teardown
        try:
            for node in self.nodes:
                node.start()
            cli = Path(redis_server_binary()).with_name("redis-cli")
            subprocess.run(
                [
                    str(cli),
                    "--cluster",
                    "create",
                    *(node.address for node in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> float:
        """Wait until every master is up, says cluster_state:ok and agrees on all 16384 slots.

        Returns how long it took.
        """
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if all(self._healthy(node) for node in self.nodes):
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError("the cluster did not become healthy: " + self.nodes[0].log_tail())

    def _healthy(self, node: Node) -> bool:
        try:
            with node.client() as client:
                info = client.execute_command("CLUSTER INFO")
                if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != 16384:
                    return False
                nodes = client.execute_command("CLUSTER NODES")
        except redis.RedisError:
            return False
        flags = [set(str(entry["flags"]).split(",")) for entry in nodes.values()]
        return len(flags) == len(self.nodes) and not any(f & {"fail", "fail?"} for f in flags)

    def slot_owner(self, slot: int) -> Node:
        """The master serving `slot`, by the cluster's own slot map."""
        for node in self.nodes:
            with contextlib.suppress(redis.RedisError), node.client() as client:
                for first, last, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                    if first <= slot <= last:
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no master serves slot {slot}")

    def owner_of_key(self, key: str) -> Node:
        return self.slot_owner(key_slot(key.encode()))

    def owner_of_party(self, name: str) -> Node:
        """The master holding every key of party `name` (its hash tag)."""
        return self.owner_of_key(f"bc:{{{name}}}:party")

    def flushall(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                with node.client() as client:
                    client.flushall()
