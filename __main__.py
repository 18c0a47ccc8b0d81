"""Pulumi program: read the stack's spec and build the platform. Nothing else happens here.

Bad configuration stops the program before any resource is registered, with one line per problem.
"""

from __future__ import annotations

import sys

import pulumi

from components.platform import HeadwaterPlatform
from headwater.config import ConfigError, format_problems, load_platform

try:
    platform = load_platform(pulumi.get_stack())
except ConfigError as err:
    # A user error, not a bug: print the problems, not a traceback.
    print(format_problems(err), file=sys.stderr)
    sys.exit(1)

headwater = HeadwaterPlatform("headwater", platform)
pulumi.export("bootstrap", headwater.bootstrap)
pulumi.export("cluster_ca_secret", headwater.cluster_ca_secret)
pulumi.export("principal_secrets", headwater.principal_secrets)
