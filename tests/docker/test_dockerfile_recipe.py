"""Replay docker/Dockerfile outside a container and start the service it builds.

No Docker engine runs here, so the test reads the Dockerfile and runs its
install commands (the RUN lines) and its start command (CMD) in order, in a
fresh virtual environment under a temporary folder used as the image's root
file system. Container paths in ARG/ENV values, WORKDIR, COPY and VOLUME map
to the same path under that folder. RUN lines that can only run inside a
container are listed in CONTAINER_ONLY_COMMANDS with the reason. Every other
RUN line runs, and the test fails when one exits non-zero.

A fresh install of torch takes minutes, so the test runs only with
HARMA_TEST_DOCKER_RECIPE=1.
"""

from __future__ import annotations

import json
import os
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
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
DEFAULT_WEIGHTS = REPO_ROOT / "model" / "pretrained" / "default"
SAMPLE_IMAGES = REPO_ROOT / "data" / "ucm_captions" / "images"

pytestmark = [
    pytest.mark.docker_recipe,
    pytest.mark.skipif(os.environ.get("HARMA_TEST_DOCKER_RECIPE") != "1",
                       reason="set HARMA_TEST_DOCKER_RECIPE=1 to replay docker/Dockerfile (takes minutes)"),
]

# Commands that change the machine's accounts or system packages. Each needs
# root and a container's own /etc, so running it here would alter the host.
# A RUN line is skipped only when every command in it (split on &&) starts
# with one of these prefixes.
CONTAINER_ONLY_COMMANDS = {
    "groupadd": "adds a system group to /etc/group",
    "useradd": "adds the service user to /etc/passwd",
    "install --directory --owner": (
        "creates the VOLUME folders owned by the service user, which exists only "
        "in the image; the replay creates the VOLUME folders itself"),
    "apt-get": "installs Debian packages into the image's system folders",
}

# PATH of the python:3.11 base image, with the folder that provides `python`
# put first in place of /usr/local/bin.
BASE_PATH_DIRS = ["/usr/local/sbin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]

# Proxy settings are the build machine's network, not part of the recipe.
PASS_THROUGH = {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"}

STEP_TIMEOUT_S = 1500
SERVER_START_TIMEOUT_S = 300
REBUILD_TIMEOUT_S = 300
POLL_INTERVAL_S = 0.5


# Dockerfile parsing ---------------------------------------------------------

@dataclass
class Instruction:
    keyword: str
    arguments: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Split a Dockerfile into instructions, joining backslash continuations.

    Comment lines are dropped, also inside a continued instruction, as Docker
    does. Parser directives such as `# syntax=` are comments here too.
    """
    instructions: list[Instruction] = []
    pending: list[str] = []
    start_line = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start_line = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        text = " ".join(pending)
        pending = []
        keyword, _, arguments = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start_line))
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    return instructions


def expand_variables(text: str, variables: dict[str, str]) -> str:
    """Expand $NAME and ${NAME} as Docker does in ENV, WORKDIR, COPY and VOLUME."""
    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, "")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", replace, text)


def parse_key_values(arguments: str) -> list[tuple[str, str | None]]:
    """Parse `KEY=VALUE ...` (or a bare `KEY` for ARG) with shell-style quoting."""
    pairs = []
    for token in shlex.split(arguments):
        key, separator, value = token.partition("=")
        pairs.append((key, value if separator else None))
    return pairs


def parse_exec_form(arguments: str, keyword: str) -> list[str]:
    """Parse the JSON exec form of CMD or ENTRYPOINT, and reject the shell form."""
    assert arguments.startswith("["), (
        f"{keyword} uses the shell form; use the exec form so the server gets SIGTERM directly")
    argv = json.loads(arguments)
    assert argv and all(isinstance(item, str) for item in argv), f"{keyword} must be a list of strings"
    return argv


def container_only_reason(command: str) -> str | None:
    """Return why a RUN line cannot run outside a container, or None when it can."""
    parts = [part.strip() for part in command.split("&&")]
    reasons = []
    for part in parts:
        reason = next((text for prefix, text in CONTAINER_ONLY_COMMANDS.items()
                       if part == prefix or part.startswith(prefix + " ")), None)
        if reason is None:
            return None
        reasons.append(f"{part.split()[0]}: {reason}")
    return "; ".join(reasons)


# .dockerignore --------------------------------------------------------------

def _pattern_regex(pattern: str) -> re.Pattern:
    parts = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts) + r"\Z")


def read_dockerignore(path: Path) -> list[tuple[bool, re.Pattern]]:
    """Return (negated, regex) per .dockerignore line, in file order."""
    rules = []
    if not path.exists():
        return rules
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def is_ignored(relative: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Apply Docker's rule: the last pattern that matches the path or a parent wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[:count]) for count in range(1, len(parts) + 1)]
    ignored = False
    for negated, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


# Replay ---------------------------------------------------------------------

@dataclass
class Replay:
    """State of a Dockerfile replay: the mapped root, variables and folders."""

    root: Path
    log_dir: Path
    base_python: Path
    variables: dict[str, str] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    volumes: list[Path] = field(default_factory=list)
    exposed_ports: list[int] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    healthcheck: list[str] | None = None
    start_command: list[str] | None = None
    user: str | None = None

    def map_path(self, container_path: str) -> Path:
        assert container_path.startswith("/"), f"expected an absolute container path, got {container_path!r}"
        return self.root / container_path.lstrip("/")

    def expand(self, text: str) -> str:
        return expand_variables(text, {**self.build_args, **self.variables})

    def map_value(self, raw: str) -> str:
        """Expand a value and map it into the root when it is an absolute path."""
        if raw.startswith("/"):
            return str(self.map_path(self.expand(raw)))
        return self.expand(raw)

    def build_env(self) -> dict[str, str]:
        """Return the environment of a RUN line: ARG and ENV values, the build
        machine's pip settings and proxies, and HOME of root as in a build."""
        env = {key: value for key, value in os.environ.items() if key.startswith("PIP_") or key in PASS_THROUGH}
        env["HOME"] = str(self.map_path("/root"))
        env.update(self.build_args)
        env.update(self.variables)
        return env

    def runtime_env(self) -> dict[str, str]:
        """Return the container's environment: ENV values only, HOME of the service user."""
        return {**self.variables, "HOME": str(self.map_path("/home/harma"))}


def run_logged(argv: list[str], *, env: dict[str, str], cwd: Path, log: Path, timeout_s: float) -> None:
    with open(log, "w") as stream:
        completed = subprocess.run(argv, env=env, cwd=cwd, stdout=stream, stderr=subprocess.STDOUT,
                                   timeout=timeout_s, check=False)
    if completed.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        pytest.fail(f"{argv!r} exited with {completed.returncode}; last lines of {log}:\n{tail}")


def apply_from(replay: Replay, arguments: str) -> None:
    image = arguments.split()[0]
    match = re.match(r"python:(\d+)\.(\d+)", image)
    assert match, f"the replay models a python:X.Y base image, got {image!r}"
    expected = (int(match.group(1)), int(match.group(2)))
    probe = subprocess.run([str(replay.base_python), "-c", "import sys; print(*sys.version_info[:2])"],
                           capture_output=True, text=True, check=True)
    found = tuple(int(part) for part in probe.stdout.split())
    if found != expected:
        pytest.skip(f"the base image has Python {expected}, the interpreter here is {found}")
    shim = replay.root / "usr" / "local" / "bin"
    shim.mkdir(parents=True)
    for name in ("python", "python3", f"python{expected[0]}.{expected[1]}"):
        (shim / name).symlink_to(replay.base_python)
    replay.variables["PATH"] = os.pathsep.join([str(shim), *BASE_PATH_DIRS])


def apply_copy(replay: Replay, arguments: str, rules) -> None:
    tokens = shlex.split(arguments)
    assert not any(token.startswith("--") for token in tokens), f"COPY flags are not replayed: {arguments}"
    *sources, destination = [replay.expand(token) for token in tokens]
    target = replay.map_path(destination) if destination.startswith("/") else replay.workdir / destination
    for source in sources:
        assert not is_ignored(source, rules), f"COPY {source} is excluded by .dockerignore"
        origin = REPO_ROOT / source
        assert origin.exists(), f"COPY source {source} is missing from the build context"
        if origin.is_dir():
            def ignore(folder, names):
                relative = os.path.relpath(folder, REPO_ROOT)
                return [name for name in names if is_ignored(f"{relative}/{name}", rules)]
            shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
        else:
            into = target / origin.name if destination.endswith("/") else target
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, into)


def apply_run(replay: Replay, arguments: str, line: int) -> None:
    assert not arguments.startswith("["), f"line {line}: RUN in exec form is not replayed"
    assert not arguments.startswith("--"), f"line {line}: RUN flags are not replayed"
    reason = container_only_reason(arguments)
    if reason is not None:
        replay.skipped.append((arguments, reason))
        return
    # A literal container path here would touch the real machine's folders.
    literal = re.search(r"(?<![\w}$])/(opt|data|build|home|srv|app)\b", arguments)
    assert literal is None, f"line {line}: RUN uses the literal path {literal.group(0)}; use an ENV variable"
    log = replay.log_dir / f"run-line-{line}.log"
    run_logged(["/bin/sh", "-c", arguments], env=replay.build_env(), cwd=replay.workdir or replay.root,
               log=log, timeout_s=STEP_TIMEOUT_S)
    replay.executed.append(arguments)


def replay_dockerfile(replay: Replay, instructions: list[Instruction]) -> None:
    """Apply each instruction in order, running RUN lines in the mapped root."""
    rules = read_dockerignore(DOCKERIGNORE)
    for instruction in instructions:
        keyword, arguments = instruction.keyword, instruction.arguments
        if keyword == "FROM":
            apply_from(replay, arguments)
        elif keyword == "ARG":
            # No --build-arg is given, so an ARG without a default stays unset.
            for key, value in parse_key_values(arguments):
                if value is not None:
                    replay.build_args[key] = replay.map_value(value)
        elif keyword == "ENV":
            for key, value in parse_key_values(arguments):
                assert value is not None, f"line {instruction.line}: use ENV KEY=VALUE"
                replay.variables[key] = replay.map_value(value)
        elif keyword == "WORKDIR":
            replay.workdir = replay.map_path(replay.expand(arguments))
            replay.workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            apply_copy(replay, arguments, rules)
        elif keyword == "RUN":
            apply_run(replay, arguments, instruction.line)
        elif keyword == "VOLUME":
            paths = json.loads(arguments) if arguments.startswith("[") else arguments.split()
            for path in paths:
                replay.volumes.append(replay.map_path(replay.expand(path)))
                replay.volumes[-1].mkdir(parents=True, exist_ok=True)
        elif keyword == "EXPOSE":
            replay.exposed_ports.extend(int(port.split("/")[0]) for port in arguments.split())
        elif keyword == "USER":
            replay.user = arguments
        elif keyword == "HEALTHCHECK":
            _, _, command = arguments.partition(" CMD ")
            replay.healthcheck = parse_exec_form(command.strip(), "HEALTHCHECK CMD")
        elif keyword in ("CMD", "ENTRYPOINT"):
            replay.start_command = parse_exec_form(arguments, keyword)
        else:
            pytest.fail(f"line {instruction.line}: the replay does not handle {keyword}")


# Service checks -------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url: str, *, method: str = "GET", body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def wait_for_status(url: str, expected: int, timeout_s: float, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    status = 0
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}. End of {log}:\n{log.read_text()[-4000:]}")
        status, _ = http_status(url)
        if status == expected:
            return
        time.sleep(POLL_INTERVAL_S)
    pytest.fail(f"{url} returned {status}, not {expected}, within {timeout_s} s; see {log}")


def run_healthcheck(replay: Replay, env: dict[str, str]) -> int:
    return subprocess.run(replay.healthcheck, env=env, cwd=replay.workdir, capture_output=True,
                          timeout=60, check=False).returncode


def stage_archive(archive: Path, per_class: int = 2) -> int:
    """Copy a few real UCM images per class into the archive volume."""
    count = 0
    for class_dir in sorted(path for path in SAMPLE_IMAGES.iterdir() if path.is_dir()):
        target = archive / class_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(class_dir.iterdir())[:per_class]:
            shutil.copy2(image, target / image.name)
            count += 1
    return count


# The test -------------------------------------------------------------------

@pytest.fixture()
def replay(tmp_path: Path) -> Replay:
    base_python = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    return Replay(root=tmp_path / "image", log_dir=log_dir, base_python=base_python)


def test_dockerfile_recipe_serves(replay: Replay):
    started = time.monotonic()
    instructions = parse_dockerfile(DOCKERFILE)
    replay_dockerfile(replay, instructions)

    # The replay ran the installs and saw the container-only lines it skipped.
    assert any("pip install" in command and "torch==" in command for command in replay.executed)
    assert any(re.search(r"pip install\b.*\s\.(\s|$)", command) for command in replay.executed)
    assert [command for command, _ in replay.skipped], "expected the user-creation RUN line to be skipped"
    assert replay.user is not None, "the image has no USER, so it runs as root"
    assert replay.user.split(":")[0] not in ("0", "root"), f"the image runs as root ({replay.user})"
    assert replay.start_command, "the Dockerfile has no CMD or ENTRYPOINT"
    assert replay.healthcheck, "the Dockerfile has no HEALTHCHECK"
    print(f"replayed {len(replay.executed)} RUN lines in {time.monotonic() - started:.0f} s; skipped:")
    for command, reason in replay.skipped:
        print(f"  {command[:60]}... ({reason})")

    env = replay.runtime_env()
    venv = Path(env["VIRTUAL_ENV"])
    assert str(venv).startswith(str(replay.root)), "VIRTUAL_ENV must be a container path"

    # The start command resolves to the entry point installed into the image's
    # venv, and the packages import from site-packages, not from the source copy.
    executable = shutil.which(replay.start_command[0], path=env["PATH"])
    assert executable is not None, f"{replay.start_command[0]} is not on the image's PATH"
    assert Path(executable).parent == venv / "bin"
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import service, model, index; "
                            "print(service.__file__); print(model.__file__); print(index.__file__)"],
                           env=env, cwd=replay.workdir, capture_output=True, text=True, timeout=120, check=True)
    for module_file in probe.stdout.split():
        assert "site-packages" in module_file, f"{module_file} is not an installed (non-editable) module"

    # The three volumes exist and the service settings point at them.
    volume_names = {path.name for path in replay.volumes}
    assert volume_names == {"archive", "snapshots", "checkpoints"}
    assert Path(env["HARMA_ARCHIVE_DIR"]) in replay.volumes
    assert Path(env["HARMA_SNAPSHOT_DIR"]) in replay.volumes
    assert int(env["HARMA_PORT"]) in replay.exposed_ports
    assert env["HARMA_HOST"] == "0.0.0.0"

    image_count = stage_archive(Path(env["HARMA_ARCHIVE_DIR"]))
    assert image_count > 0

    # Overrides that `docker run -e` would pass: loopback only, a free port,
    # an admin token, and the tiny model while the default weights are absent.
    port = free_port()
    token = "recipe-test-token"
    env.update(HARMA_HOST="127.0.0.1", HARMA_PORT=str(port), HARMA_ADMIN_TOKEN=token)
    if not DEFAULT_WEIGHTS.is_dir():
        # NOTE: until model/pretrained/default ships, the image serves tiny-vit here.
        env["HARMA_MODEL"] = "tiny-vit"

    base = f"http://127.0.0.1:{port}"
    server_log = replay.log_dir / "server.log"
    assert run_healthcheck(replay, env) != 0, "the healthcheck passed with no server running"
    with open(server_log, "w") as stream:
        server = subprocess.Popen(replay.start_command, env=env, cwd=replay.workdir,
                                  stdout=stream, stderr=subprocess.STDOUT)
    try:
        wait_for_status(f"{base}/healthz", 200, SERVER_START_TIMEOUT_S, server, server_log)

        # An empty snapshot volume leaves the service live but not ready.
        status, _ = http_status(f"{base}/readyz")
        assert status == 503
        assert run_healthcheck(replay, env) != 0, "the healthcheck passed before the first snapshot"

        job = run_admin_rebuild(base, token, REBUILD_TIMEOUT_S)
        assert job["state"] == "succeeded", f"the rebuild failed: {job.get('error')}"
        assert job["image_count"] == image_count
        wait_for_status(f"{base}/readyz", 200, 30, server, server_log)
        assert run_healthcheck(replay, env) == 0, "the healthcheck failed on a ready service"
        published = list(Path(env["HARMA_SNAPSHOT_DIR"]).iterdir())
        assert published, "the rebuild wrote nothing to the snapshot volume"
    finally:
        # `docker stop` sends SIGTERM first and SIGKILL after a grace period.
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
    # uvicorn (0.55 here) shuts down gracefully, then re-raises SIGTERM, so -15 is a clean stop.
    assert server.returncode in (0, -signal.SIGTERM), f"the server exited with {server.returncode} on SIGTERM"
    assert "Application shutdown complete" in server_log.read_text(), f"no graceful shutdown in {server_log}"
    print(f"docker recipe replay and service checks took {time.monotonic() - started:.0f} s")


def run_admin_rebuild(base: str, token: str, timeout_s: float) -> dict:
    """Start an admin rebuild of the archive and poll its job until it ends."""
    headers = {"Authorization": f"Bearer {token}"}
    status, body = http_status(f"{base}/v1/admin/index/rebuild", method="POST", headers=headers)
    assert status == 202, f"POST /v1/admin/index/rebuild returned {status}: {body[:500]!r}"
    status_url = base + json.loads(body)["status_url"]

    deadline = time.monotonic() + timeout_s
    job: dict = {}
    while time.monotonic() < deadline:
        status, body = http_status(status_url, headers=headers)
        assert status == 200, f"GET {status_url} returned {status}: {body[:500]!r}"
        job = json.loads(body)
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(POLL_INTERVAL_S)
    pytest.fail(f"the rebuild job did not finish within {timeout_s} s; last state: {job}")
