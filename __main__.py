"""Pulumi program: read the stack's configuration through Pulumi, build the platform. Nothing else happens here.

Configuration comes through `pulumi.Config`'s source (the stack file, `pulumi config set [--secret]`, `-c`,
Pulumi ESC environments), decoded into the same mapping the offline tools read from the stack file, and
validated by the same loader: bad configuration stops the program before any resource is registered, with one
line per problem.
"""

from __future__ import annotations

import sys

import pulumi
from pulumi.runtime.config import CONFIG, get_config_env, is_config_secret

from components.platform import HeadwaterPlatform
from headwater.config import ConfigError, decode_pulumi_config, format_problems, load_platform


def _pulumi_config() -> tuple[dict[str, str], set[str]]:
    """Every config value Pulumi passed to this program (secrets decrypted), and which keys are secret."""
    values = {**get_config_env(), **CONFIG.get()}
    return values, {key for key in values if is_config_secret(key)}


values, secret_keys = _pulumi_config()
try:
    platform = load_platform(pulumi.get_stack(), decode_pulumi_config(values), secret_keys=secret_keys)
except ConfigError as err:
    # A user error, not a bug: print the problems, not a traceback.
    print(format_problems(err), file=sys.stderr)
    sys.exit(1)

headwater = HeadwaterPlatform("headwater", platform)
pulumi.export("bootstrap", headwater.bootstrap)
pulumi.export("cluster_ca_secret", headwater.cluster_ca_secret)
pulumi.export("principal_secrets", headwater.principal_secrets)
