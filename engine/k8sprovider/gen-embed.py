"""The provider's two embedded files, as upstream's cmd/pulumi-resource-kubernetes/generate.go makes them.

schema.json -> schema-embed.json (with "version" set), terraform-mapping.json -> a minified copy.
Usage: gen-embed.py <provider source folder> <version>
"""

import json
import sys
from pathlib import Path

src, version = Path(sys.argv[1]), sys.argv[2]
spec = json.loads((src / "schema.json").read_text())
spec["version"] = version
Path("schema-embed.json").write_text(json.dumps(spec, separators=(",", ":")))
mapping = json.loads((src / "terraform-mapping.json").read_text())
Path("terraform-mapping-embed.json").write_text(json.dumps(mapping, separators=(",", ":")))
