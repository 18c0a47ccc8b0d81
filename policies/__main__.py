"""Entry point of `pulumi preview --policy-pack policies`: build the pack for the stack and serve it."""

import sys
from pathlib import Path

try:
    import policies  # noqa: F401  (installed with the project: `make venv`)
except ImportError:  # a bare virtualenv: use the checkout this file lives in
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from policies.pack import pack_arguments
from policies.rulebook import StackFacts

PolicyPack(**pack_arguments(StackFacts.from_environ()))
