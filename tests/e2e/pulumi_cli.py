"""Runs the real Pulumi CLI on this project against a control plane, with a stack file of the test's own.

The CLI, the Python language host, the dynamic-provider plugin and pulumi-resource-kubernetes come from the
pinned toolchain (`engine/build.sh`); state goes to a file backend in the test's folder; nothing may leave the
machine (any HTTP(S) a plugin tries off-box goes to a closed loopback port and fails at once).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "headwater-e2e-passphrase"


@dataclass
class PulumiRun:
    """A finished CLI command: its output and how long it took."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class PulumiStack:
    """One stack of this project, its config in `config_file` (outside the repository's stacks/)."""

    name: str
    bin: Path
    home: Path
    kubeconfig: Path
    config_file: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    runs: int = 0

    @property
    def logs(self) -> Path:
        """Every command's output, kept after `clean()`."""
        return self.home.parent / f"{self.home.name}-logs"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        env.update(
            {
                "PATH": f"{self.bin}:{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
                "PULUMI_HOME": str(self.home / "pulumi-home"),
                "PULUMI_BACKEND_URL": f"file://{self.home / 'state'}",
                "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
                "PULUMI_SKIP_UPDATE_CHECK": "true",
                "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                "PULUMI_SKIP_CONFIRMATIONS": "true",
                "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
                "KUBECONFIG": str(self.kubeconfig),
                # Nothing leaves the machine: a plugin that tries fails at once instead of hanging.
                "HTTP_PROXY": "http://127.0.0.1:9",
                "HTTPS_PROXY": "http://127.0.0.1:9",
                "http_proxy": "http://127.0.0.1:9",
                "https_proxy": "http://127.0.0.1:9",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        env.update(self.extra_env)
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 1200, stack: bool = True) -> PulumiRun:
        argv = [str(self.bin / "pulumi"), *args, "--non-interactive", "--cwd", str(ROOT)]
        if stack:
            argv += ["--stack", self.name, "--config-file", str(self.config_file)]
        # Output goes to files beside the stack's folder while the command runs (tail them to follow a
        # long `up`); they outlive the stack's cleanup.
        self.runs += 1
        log = self.logs / f"{self.runs:02d}-{args[0]}"
        log.parent.mkdir(parents=True, exist_ok=True)
        print(
            f"[pulumi] {' '.join(args)} (stack {self.name}; output: {log}.out/.err)",
            file=sys.stderr,
            flush=True,
        )
        started = time.monotonic()
        with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
            done = subprocess.run(argv, env=self.env(), stdout=out, stderr=err, timeout=timeout, check=False)
        stdout, stderr = Path(f"{log}.out").read_text(), Path(f"{log}.err").read_text()
        result = PulumiRun(list(args), done.returncode, stdout, stderr, time.monotonic() - started)
        print(
            f"[pulumi] {args[0]} exited {done.returncode} in {result.seconds:.1f}s",
            file=sys.stderr,
            flush=True,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"pulumi {' '.join(args)} failed ({done.returncode}):\n{result.output[-8000:]}"
            )
        return result

    def init(self, config: dict[str, Any]) -> None:
        (self.home / "state").mkdir(parents=True, exist_ok=True)
        self.write_config(config)
        self.run("stack", "init", self.name, stack=False)
        # `stack init` writes the passphrase salt into the project's stack folder (it takes no --config-file):
        # move it into this stack's own file, so the repository's stacks/ stay as they are.
        made = ROOT / "stacks" / f"Pulumi.{self.name}.yaml"
        if made.exists():
            extra = yaml.safe_load(made.read_text()) or {}
            made.unlink()
            current = yaml.safe_load(self.config_file.read_text()) or {}
            current.update({k: v for k, v in extra.items() if k != "config"})
            self.config_file.write_text(yaml.safe_dump(current, sort_keys=False))

    def write_config(self, config: dict[str, Any]) -> None:
        current = yaml.safe_load(self.config_file.read_text()) if self.config_file.exists() else {}
        # keep what Pulumi wrote itself (the passphrase salt, encrypted values set through the CLI)
        current = current or {}
        current["config"] = {**(current.get("config") or {}), **config}
        self.config_file.write_text(yaml.safe_dump(current, sort_keys=False))

    def set_secret(self, path: str, value: str) -> None:
        self.run("config", "set", "--secret", "--path", path, value)

    def decrypted_config(self) -> dict[str, str]:
        out = self.run("config", "--show-secrets", "--json").stdout
        return {key: entry["value"] for key, entry in json.loads(out).items() if "value" in entry}

    def secret_keys(self) -> set[str]:
        out = self.run("config", "--json").stdout
        return {key for key, entry in json.loads(out).items() if entry.get("secret")}

    def state_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.home / "state").rglob("*.json"))

    def clean(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
