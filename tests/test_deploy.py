"""The deployment files keep their promises, checked without a Docker engine.

The image: the Dockerfile's builder steps run here (a copy of exactly the build context, a fresh
venv, the same pip commands), then the courier starts the way the container's ENTRYPOINT does,
with the image's CHANNEL_* environment, answers its probes and the image's HEALTHCHECK, and
stops cleanly on SIGTERM. Replicas: two such couriers on one Redis with one mounted key, behind
deploy/nginx/backchannel.conf when nginx is installed. The rest reads the files for what
docs/deploy.md promises.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel.courier.embedded import EmbeddedRedis
from channel.courier.settings import Settings
from channel.party.client import Client
from channel.protocol.lifecycle import State
from channel.protocol.seal import PartyKeys, raw_public

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DATA_DIR = "/var/lib/backchannel"
# Where the Dockerfile's absolute paths land in the stand-in "image" under a temp dir.
IMAGE_PATHS = {"/opt/venv": "opt-venv", "/tmp/wheels": "wheels", "/src": "src"}
INSTALL_TIMEOUT = 600


# --- reading the Dockerfile, .dockerignore and YAML ------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: str
    keyword: str
    value: str


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    stage, pending = "", ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            keyword, _, value = pending.strip().partition(" ")
            if keyword.upper() == "FROM":
                stage = value.split(" AS ")[-1].strip() if " AS " in value else value
            instructions.append(Instruction(stage, keyword.upper(), value.strip()))
        pending = ""
    return instructions


def stage(name: str) -> list[Instruction]:
    return [each for each in dockerfile() if each.stage == name]


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for each in instructions:
        if each.keyword == "ENV":
            for pair in shlex.split(each.value):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def one(instructions: list[Instruction], keyword: str) -> str:
    found = [each.value for each in instructions if each.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the stage, found {found}"
    return found[0]


def healthcheck_command() -> list[str]:
    value = one(stage("runtime"), "HEALTHCHECK")
    options, _, command = value.partition(" CMD ")
    assert options.startswith("--"), value
    parsed: list[str] = json.loads(command)
    return parsed


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated relative paths."""
    parts = pattern.strip("/").split("/")
    regex = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
            continue
        regex += re.sub(
            r"\\\*|\\\?|\\\[(.*?)\\\]",
            lambda m: (
                "[^/]*"
                if m.group(0) == r"\*"
                else "[^/]"
                if m.group(0) == r"\?"
                else f"[{m.group(1)}]"
            ),
            re.escape(part),
        )
        regex += "" if last else "/"
    return re.compile(regex + r"\Z")


def dockerignore() -> list[tuple[re.Pattern[str], bool, str]]:
    """(regex, is an exception "!", the pattern) for each line of .dockerignore, in order."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        rules.append((_pattern_regex(pattern), negated, pattern.strip("/")))
    return rules


def ignored(path: str, rules: list[tuple[re.Pattern[str], bool, str]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for regex, negated, _ in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            result = not negated
    return result


def build_context(root: Path) -> list[str]:
    """The files `docker build` would send from `root`, as relative paths."""
    rules = dockerignore()
    kept: list[str] = []
    for directory, subdirs, files in os.walk(root):
        base = Path(directory).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        # Skip a whole ignored directory unless an exception could bring something under it back.
        subdirs[:] = [
            name
            for name in subdirs
            if not ignored(prefix + name, rules)
            or any(neg and pat.startswith(prefix + name + "/") for _, neg, pat in rules)
        ]
        kept += [prefix + name for name in files if not ignored(prefix + name, rules)]
    return sorted(kept)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s(kind: str) -> dict[str, Any]:
    found = [
        doc
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_all_yaml(path)
        if doc.get("kind") == kind
    ]
    assert found, f"no {kind} in deploy/k8s"
    doc: dict[str, Any] = found[0]
    return doc


# --- the stand-in image: the builder's steps in a temp dir -----------------------------------


@dataclass
class Image:
    root: Path
    entrypoint: list[str]
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def in_image(self, value: str) -> str:
        for absolute, relative in IMAGE_PATHS.items():
            value = value.replace(absolute, str(self.root / relative))
        return value

    def container_env(self, data_dir: Path, port: int, **extra: str) -> dict[str, str]:
        """The runtime stage's ENV (as `docker run -e` would override it), nothing from ours."""
        env = {"HOME": str(data_dir), "LANG": "C.UTF-8"}
        for key, value in self.env.items():
            env[key] = self.in_image(value).replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(CHANNEL_DATA_DIR=str(data_dir), CHANNEL_PORT=str(port), **extra)
        return env

    def start(self, data_dir: Path, port: int, **extra: str) -> subprocess.Popen[bytes]:
        """The container's ENTRYPOINT, as `docker run IMAGE` runs it."""
        data_dir.mkdir(parents=True, exist_ok=True)
        log = data_dir.parent / f"{data_dir.name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                self.entrypoint,
                env=self.container_env(data_dir, port, **extra),
                cwd=data_dir,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process


def run_builder_stage(root: Path, context: Path) -> None:
    """Each builder instruction in order: COPY from the context, RUN the venv and pip steps."""
    shim = root / "shim"
    shim.mkdir()
    (shim / "python").symlink_to(sys.executable)
    builder = stage("builder")
    env = {**os.environ, **env_of(builder), "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    workdir = root
    for each in builder:
        value = each.value
        for absolute, relative in IMAGE_PATHS.items():
            value = value.replace(absolute, str(root / relative))
        if each.keyword == "WORKDIR":
            workdir = Path(value)
            workdir.mkdir(parents=True, exist_ok=True)
        elif each.keyword == "COPY":
            *sources, destination = shlex.split(value)
            for source in sources:
                target = workdir / destination
                if (context / source).is_dir():
                    shutil.copytree(context / source, target, dirs_exist_ok=True)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(context / source, target)
        elif each.keyword == "RUN" and str(root / "opt-venv") in value:
            # The other RUN installs a C compiler on non-x86_64 builds only.
            subprocess.run(
                ["sh", "-ec", value],
                cwd=workdir,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=INSTALL_TIMEOUT,
            )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """The builder stage run once per session, from a copy of exactly the build context."""
    root = tmp_path_factory.mktemp("image")
    context = root / "context"
    for relative in build_context(ROOT):
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, context / relative)
    run_builder_stage(root, context)
    made = Image(root, json.loads(one(stage("runtime"), "ENTRYPOINT")), env_of(stage("runtime")))
    # The runtime stage has its entrypoint on PATH through the venv copied from the builder.
    assert made.entrypoint[0] == "channel"
    yield made
    for process in made.processes:
        stop(process)


# --- processes and HTTP ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def wait_until_serving(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the courier exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if get(url + "/healthz", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the courier did not answer /healthz in time:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- the image, run as the container runs it ------------------------------------------------


@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_entrypoint_serves_probes_and_stops_cleanly_on_sigterm(
    image: Image, tmp_path: Path
) -> None:
    """Run as the ENTRYPOINT runs it, the courier answers its probes and exits 0 on SIGTERM."""
    data_dir, port = tmp_path / "data", free_port()
    process = image.start(data_dir, port)
    log = tmp_path / "data.log"
    wait_until_serving(process, f"http://127.0.0.1:{port}", log)

    health = get(f"http://127.0.0.1:{port}/healthz")
    assert health[0] == 200
    assert json.loads(health[2])["status"] == "ok"
    assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    check = subprocess.run(
        healthcheck_command(), env=image.container_env(data_dir, port), timeout=30, check=False
    )
    assert check.returncode == 0
    # Listening on all interfaces, as --host 0.0.0.0 in the ENTRYPOINT says.
    assert f"Courier ready at http://0.0.0.0:{port}" in log.read_text()
    key = data_dir / "courier.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_bytes()) == 32
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
    assert alive(redis_pid)

    assert stop(process) == 0
    assert "Courier stopped" in log.read_text()
    deadline = time.monotonic() + 10
    while alive(redis_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(redis_pid), "the embedded redis-server outlived the courier"


@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_healthcheck_fails_when_no_courier_answers(image: Image, tmp_path: Path) -> None:
    """The image's HEALTHCHECK command exits non-zero when nothing answers on the port."""
    env = image.container_env(tmp_path, free_port())
    check = subprocess.run(
        healthcheck_command(), env=env, timeout=30, check=False, capture_output=True
    )
    assert check.returncode != 0


@dataclass
class Replicas:
    urls: list[str]
    key: Ed25519PrivateKey
    data_dirs: list[Path]


@pytest.fixture(scope="module")
def replicas(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Two couriers from the image on one Redis, the same key file read-only in each data dir."""
    root = tmp_path_factory.mktemp("replicas")
    secret = os.urandom(32)  # what `head -c 32 /dev/urandom > courier.key` makes
    with EmbeddedRedis(root / "redis", port=free_port(), fsync="everysec") as redis:
        urls, data_dirs, processes = [], [], []
        for name in ("courier-a", "courier-b"):
            data_dir, port = root / name, free_port()
            data_dir.mkdir(mode=0o700)
            (data_dir / "courier.key").write_bytes(secret)
            (data_dir / "courier.key").chmod(0o400)
            process = image.start(
                data_dir, port, CHANNEL_REDIS_URL=redis.url, CHANNEL_OPEN_REGISTRATION="true"
            )
            processes.append(process)
            wait_until_serving(process, f"http://127.0.0.1:{port}", root / f"{name}.log")
            urls.append(f"http://127.0.0.1:{port}")
            data_dirs.append(data_dir)
        yield Replicas(urls, Ed25519PrivateKey.from_private_bytes(secret), data_dirs)
        for process in processes:
            stop(process)


@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_replicas_sign_with_the_one_mounted_key(replicas: Replicas) -> None:
    """Replicas on one Redis serve the mounted key's public half and start no Redis of their own."""
    public = raw_public(replicas.key)
    for url in replicas.urls:
        status, _, body = get(url + "/v1/courier")
        assert status == 200
        assert base64.b64decode(json.loads(body)["signing_key"]) == public
        assert get(url + "/readyz")[0] == 200
    for data_dir in replicas.data_dirs:
        assert sorted(path.name for path in data_dir.iterdir()) == ["courier.key"]


NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)),
    None,
)


@pytest.fixture
def load_balancer(replicas: Replicas, tmp_path: Path) -> Iterator[str]:
    """deploy/nginx/backchannel.conf in front of the two replicas (names and port rewritten)."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light): LB config not run")
    site = (DEPLOY / "nginx" / "backchannel.conf").read_text()
    port = free_port()
    rewrites = {
        "server courier-a:8700 ": f"server {replicas.urls[0].removeprefix('http://')} ",
        "server courier-b:8700 ": f"server {replicas.urls[1].removeprefix('http://')} ",
        "listen 80;": f"listen 127.0.0.1:{port};",
    }
    for old, new in rewrites.items():
        assert site.count(old) == 1, f"backchannel.conf no longer has {old!r}"
        site = site.replace(old, new)
    (tmp_path / "site.conf").write_text(site)
    temp = "\n".join(
        f"  {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = pwd.getpwuid(os.geteuid()).pw_name
    (tmp_path / "nginx.conf").write_text(
        f"user {user};\nworker_processes 1;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'error.log'};\nevents {{}}\n"
        f"http {{\n  access_log off;\n{temp}\n  include {tmp_path / 'site.conf'};\n}}\n"
    )
    command = [NGINX, "-e", str(tmp_path / "error.log"), "-p", str(tmp_path)]
    command += ["-c", str(tmp_path / "nginx.conf")]
    test = subprocess.run([*command, "-t"], capture_output=True, timeout=30, check=False)
    assert test.returncode == 0, test.stderr.decode()
    process = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if get(url + "/lb-healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        stop(process, signal.SIGQUIT)


@pytest.mark.timeout(INSTALL_TIMEOUT)
async def test_nginx_config_streams_events_and_both_replicas_sign_alike(
    load_balancer: str, replicas: Replicas
) -> None:
    """Behind the nginx config events stream, and both replicas' receipts verify with one key."""
    status, headers, _ = await asyncio.to_thread(get, load_balancer + "/healthz")
    assert status == 200
    assert headers.get("X-Accel-Buffering") == "no"
    assert (await asyncio.to_thread(get, load_balancer + "/readyz"))[0] == 200
    assert (await asyncio.to_thread(get, load_balancer + "/metrics"))[0] == 404
    big = await asyncio.to_thread(_post, load_balancer + "/v1/parties", b"x" * (3 << 20))
    assert big[0] == 413
    assert big[1].startswith("application/problem+json")

    director_keys = PartyKeys.generate("us.cia.director")
    quds_keys = PartyKeys.generate("ir.irgc.quds")
    courier_key = raw_public(replicas.key)
    async with (
        Client(load_balancer, director_keys) as director,
        Client(load_balancer, quds_keys) as quds,
        Client(replicas.urls[0], director_keys) as director_on_a,
        Client(replicas.urls[1], quds_keys) as quds_on_b,
    ):
        for client in (director, quds, director_on_a, quds_on_b):
            client.trust_courier(courier_key)
        await director.register()
        await quds.register()

        events = quds.events()
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.5)  # the stream is open before the letter goes
        sealed, _ = await director_on_a.send_letter("ir.irgc.quds", "Through the balancer.")
        event = await asyncio.wait_for(first, timeout=15)
        assert event.letter_id == sealed.envelope.id
        await events.aclose()

        await quds_on_b.return_letter(sealed.envelope.id, reason="Not accepted")
        verified = await director.verified_status(sealed.envelope.id)
        assert verified.receipts[-1].event is State.RETURNED_UNOPENED


def _post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", "")


# --- what the files promise ------------------------------------------------------------------


def test_build_context_holds_the_package_and_no_secrets(tmp_path: Path) -> None:
    """The build context holds what the builder COPYs, and no venv, cache, key or Redis file."""
    context = build_context(ROOT)
    for each in stage("builder"):
        if each.keyword == "COPY":
            for source in shlex.split(each.value)[:-1]:
                assert any(path == source or path.startswith(source) for path in context), source
    assert "channel/courier/server/run.py" in context

    forbidden = [
        ".venv/bin/python",
        "channel/__pycache__/cli.cpython-311.pyc",
        "channel/courier.key",
        "deploy/secrets/courier.key",
        "keys/parties/us.cia.director.key",
        "var/redis/appendonly.aof",
        "channel/appendonlydir/appendonly.aof.1.incr.aof",
        "dump.rdb",
        "tls.pem",
        "tests/conftest.py",
        ".git/config",
    ]
    for relative in [*forbidden, "pyproject.toml", "README.md", "channel/cli.py"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")
    assert build_context(tmp_path) == ["README.md", "channel/cli.py", "pyproject.toml"]


def test_dockerfile_runtime_stage_promises() -> None:
    """Runtime: pinned slim base, non-root USER, VOLUME, EXPOSE, STOPSIGNAL, HEALTHCHECK, serve."""
    instructions = dockerfile()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base.group(1))
    froms = [each.value for each in instructions if each.keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]

    runtime = stage("runtime")
    user = one(runtime, "USER").split(":")[0]
    assert user not in ("root", "0")
    assert int(user) >= 1000
    assert json.loads(one(runtime, "VOLUME")) == [DATA_DIR]
    assert env_of(runtime)["CHANNEL_DATA_DIR"] == DATA_DIR
    assert one(runtime, "EXPOSE") == "8700" == env_of(runtime)["CHANNEL_PORT"]
    assert one(runtime, "STOPSIGNAL") == "SIGTERM"
    assert json.loads(one(runtime, "ENTRYPOINT")) == ["channel", "serve", "--host", "0.0.0.0"]
    check = healthcheck_command()
    assert check[0] == "python"
    assert "urllib.request" in check[2]
    assert "/healthz" in check[2]
    assert any(
        each.keyword == "COPY" and each.value.startswith("--from=builder /opt/venv")
        for each in runtime
    )


def test_compose_file_promises() -> None:
    """Compose: fsync-always Redis, two couriers sharing it and one key, nginx after them."""
    compose = load_yaml(DEPLOY / "compose.yaml")
    services = compose["services"]

    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])

    couriers = [services[name] for name in ("courier-a", "courier-b")]
    for courier in couriers:
        assert courier["build"]["dockerfile"] == "Dockerfile"
        assert courier["environment"]["CHANNEL_REDIS_URL"] == "redis://redis:6379/0"
        assert courier["secrets"] == [
            {"source": "courier_key", "target": f"{DATA_DIR}/courier.key"}
        ]
        assert courier["depends_on"]["redis"]["condition"] == "service_healthy"
        assert courier["restart"] == "unless-stopped"
        for name in courier["environment"]:
            assert name.removeprefix("CHANNEL_").lower() in Settings.model_fields, name
    assert compose["secrets"]["courier_key"]["file"] == "./secrets/courier.key"
    ignored_by_git = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/secrets/courier.key"], cwd=ROOT, check=False
    )
    assert ignored_by_git.returncode == 0, "deploy/secrets/courier.key must be git-ignored"

    lb = services["lb"]
    assert lb["image"].startswith("nginx:")
    assert "./nginx/backchannel.conf:/etc/nginx/conf.d/default.conf:ro" in lb["volumes"]
    assert {name: dep["condition"] for name, dep in lb["depends_on"].items()} == {
        "courier-a": "service_healthy",
        "courier-b": "service_healthy",
    }
    for name in ("redis", "lb"):
        assert services[name]["healthcheck"]["test"]
        assert services[name]["restart"]


def _nginx_block(text: str, opening: str) -> str:
    start = text.index(opening)
    depth = 0
    for end in range(text.index("{", start), len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            return text[start:end]
    raise AssertionError(f"unbalanced braces after {opening!r}")


def test_nginx_config_is_sse_friendly() -> None:
    """nginx streams (no buffering or cache, 1 h timeouts, HTTP/1.1) and keeps paths unchanged."""
    text = re.sub(r"#.*", "", (DEPLOY / "nginx" / "backchannel.conf").read_text())
    location = _nginx_block(text, "location / {")
    for directive in (
        "proxy_pass http://backchannel_couriers;",  # no URI part: the request line is unchanged
        "proxy_buffering off;",
        "proxy_cache off;",
        "proxy_read_timeout 1h;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "add_header X-Accel-Buffering no always;",
    ):
        assert directive in " ".join(location.split()), directive
    upstream = _nginx_block(text, "upstream backchannel_couriers {")
    assert re.findall(r"server (\S+)", upstream) == ["courier-a:8700", "courier-b:8700"]
    body = re.search(r"client_max_body_size (\d+)m;", text)
    assert body is not None
    assert int(body.group(1)) << 20 > Settings.model_fields["max_body_bytes"].default


def test_kubernetes_manifests_promises() -> None:
    """The Deployment: >= 2 replicas, probes, limits, non-root read-only pods, key from a Secret."""
    deployment = k8s("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 1000
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert "emptyDir" in volumes[mounts[DATA_DIR]["name"]]
    key_mount = mounts[f"{DATA_DIR}/courier.key"]
    secret = volumes[key_mount["name"]]["secret"]
    assert key_mount["subPath"] == "courier.key"
    assert key_mount["readOnly"] is True
    assert secret["secretName"] == "backchannel-courier-key"
    assert not secret.get("optional")
    redis_url = next(env for env in container["env"] if env["name"] == "CHANNEL_REDIS_URL")
    assert not redis_url["valueFrom"]["secretKeyRef"].get("optional")

    port = container["ports"][0]
    config = k8s("ConfigMap")["data"]
    assert str(port["containerPort"]) == config["CHANNEL_PORT"]
    assert config["CHANNEL_DATA_DIR"] == DATA_DIR
    for name in config:
        assert name.removeprefix("CHANNEL_").lower() in Settings.model_fields, name
    service = k8s("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    pdb = k8s("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]

    kustomization = load_yaml(DEPLOY / "k8s" / "kustomization.yaml")
    assert "secret.example.yaml" not in kustomization["resources"]


def test_secret_template_holds_no_key_material() -> None:
    """The Secret template's values cannot decode to a key, and deploy/ holds no base64 key."""
    for doc in load_all_yaml(DEPLOY / "k8s" / "secret.example.yaml"):
        for value in doc.get("data", {}).values():
            with pytest.raises(binascii.Error):
                base64.b64decode(value, validate=True)
        for value in doc.get("stringData", {}).values():
            assert value.startswith("<")
            assert value.endswith(">")
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "courier.key":
            assert not re.search(r"(?<![\w+/])[A-Za-z0-9+/]{43}=", path.read_text()), path


def test_deploy_doc_lists_every_setting() -> None:
    """docs/deploy.md's settings table names every courier setting as its CHANNEL_* variable."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    missing = [name for name in Settings.model_fields if f"`CHANNEL_{name.upper()}`" not in doc]
    assert not missing, f"docs/deploy.md does not document: {missing}"
