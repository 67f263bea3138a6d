"""Write the AsyncAPI 3.0 document of every topic and message, generated from the code
(FastStream, with the pydantic message schemas of schemas/). Topic names follow the TOPIC_*
settings. docs/asyncapi.yaml is the checked-in copy for the default topic names; the HTTP
shim serves the same document at /asyncapi."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepfake_stream.core.settings import Settings

HELP = "write the AsyncAPI document of all topics and messages (YAML or JSON)"
SETTINGS = ("topics",)
EXAMPLES = """\
  deepfake-stream asyncapi --out docs/asyncapi.yaml
  deepfake-stream asyncapi --format json > asyncapi.json
  deepfake-stream asyncapi --topic-input acme.detect.in --out acme-asyncapi.yaml
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="file to write (default: standard output); a .json name writes JSON",
    )
    parser.add_argument(
        "--format",
        choices=["yaml", "json"],
        default=None,
        help="output format (default: from --out's suffix, else yaml)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from deepfake_stream.asyncapi import asyncapi_document, asyncapi_yaml

    fmt = args.format or ("json" if args.out and args.out.suffix == ".json" else "yaml")
    if fmt == "json":
        text = json.dumps(asyncapi_document(settings.topics), indent=2) + "\n"
    else:
        text = asyncapi_yaml(settings.topics)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
